"""Section 6's cost arithmetic: Streamer's floor and the AWS alternatives, from list prices.

Expected figures are worked by hand from the prices in bench/prices.py (US dollars
per million requests): a WebSocket message $1.00, a Lambda request $0.20, an SQS
request $0.40, an Express execution $1.00 and $0.06 per GB-hour of it, Lambda arm64
$0.0000133334 per GB-s, a DynamoDB write unit $0.625.
"""

from __future__ import annotations

import pytest

from bench import alternatives
from bench.alternatives import Request

#: A 5 s handler run at the processor's 1,024 MB: 5 GB-s.
FIVE_SECONDS_OF_WORK = 5 * 0.0000133334 * 1e6


def per_million(usd: float | None) -> float | None:
    return None if usd is None else round(usd * 1e6, 6)


def test_a_sync_message_cannot_cost_less_than_its_two_messages_and_one_invocation():
    sync = Request("sync", messages=2)

    assert per_million(alternatives.floor_usd(sync)) == pytest.approx(2.20)
    # the same job built otherwise is the same invocation: no alternative
    assert alternatives.sqs_worker_usd(sync) is None
    assert alternatives.express_usd(sync) is None


def test_connections_cost_their_invocations_only():
    assert per_million(alternatives.floor_usd(Request("connection", 0))) == pytest.approx(0.40)
    assert per_million(alternatives.floor_usd(Request("disconnection", 0))) == pytest.approx(0.20)


def test_an_async_request_without_progress():
    # request, acknowledgment, complete; the router and the worker
    request = Request("async", messages=3, run_s=0.0)

    assert per_million(alternatives.floor_usd(request)) == pytest.approx(3.40)
    # + SendMessage, ReceiveMessage, DeleteMessage at $0.40
    assert per_million(alternatives.sqs_worker_usd(request)) == pytest.approx(4.60)
    # + one execution, billed 100 ms at 64 MB: 0.1 s x 1/16 GB x $0.06/3600
    assert per_million(alternatives.express_usd(request)) == pytest.approx(
        4.40 + 0.1 / 16 * 0.06 / 3600 * 1e6
    )


def test_the_handlers_run_is_in_every_column_alike():
    request = Request("async", messages=30, run_s=5.0)

    floor = per_million(alternatives.floor_usd(request))
    assert floor == pytest.approx(30 + 0.40 + FIVE_SECONDS_OF_WORK)
    assert per_million(alternatives.sqs_worker_usd(request)) == pytest.approx(floor + 1.20)
    assert per_million(alternatives.express_usd(request)) == pytest.approx(
        floor + 1.00 + 5.0 / 16 * 0.06 / 3600 * 1e6
    )


@pytest.mark.parametrize(
    ("run_s", "billed_s"),
    [(0.0, 0.1), (0.05, 0.1), (0.1, 0.1), (0.1001, 0.2), (1.0, 1.0), (1.01, 1.1), (5.0, 5.0)],
)
def test_an_express_execution_is_billed_in_whole_100_ms(run_s, billed_s):
    assert alternatives.express_billed_s(run_s) == pytest.approx(billed_s)


def test_streamers_ratio_to_its_floor_counts_dynamodb_not_this_machines_lambda_time():
    # GIVEN a sync message priced by bench.cost: 2 messages, 1.1 invocations,
    # a twentieth of a write, and 9 ms of this machine's Lambda time
    scenario = {
        "messages": 2,
        "totals": {
            "usd_per_million": {
                "api_gateway_messages": 2.00,
                "lambda_requests": 0.22,
                "lambda_duration": 0.06,
                "dynamodb": 0.05 * 0.625,
                "total": 2.31125,
            }
        },
    }

    compared = alternatives.comparison("sync, no id", scenario)

    assert compared["streamer"] == pytest.approx(2.22 + 0.03125)
    assert compared["floor"] == pytest.approx(2.20)
    assert compared["ratio_to_floor"] == pytest.approx(2.25125 / 2.20)
    assert compared["dynamodb_priced"] is True
    assert compared["sqs_worker"] is None


def test_a_run_on_moto_says_dynamodb_was_not_priced():
    scenario = {
        "messages": 3,
        "run_s": 0.0,
        "totals": {"usd_per_million": {"api_gateway_messages": 3.0, "lambda_requests": 0.4}},
    }

    compared = alternatives.comparison("async, no progress", scenario)

    assert compared["dynamodb_priced"] is False
    assert compared["ratio_to_floor"] == pytest.approx(1.0)
    assert "DynamoDB not priced" in alternatives.console({"async, no progress": scenario})


def test_a_scenario_of_no_known_kind_is_refused():
    with pytest.raises(ValueError, match="no kind of request"):
        alternatives.kind_of("batch upload")
