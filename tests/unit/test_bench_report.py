"""The benchmark's verdicts (bench.report) and how the page words them (bench.document)."""

from __future__ import annotations

from bench import document, report


def verdict(results: dict, text: str) -> dict:
    return next(v for v in report.verdicts(results) if v["target"] == text)


def sync_results(ratio: float) -> dict:
    one = {"stack": {"p50": {"median": 0.8}}, "baseline": {"p50": {"median": 0.2}}}
    return {"sync": {"clients_1": one | {"throughput_ratio": {"median": ratio}}}}


def test_a_replaced_target_is_shown_beside_its_successor_not_as_a_miss():
    # GIVEN a run at 35 % of the bare echo: under issue 7's 50 %, over issue 15's 30 %
    results = sync_results(0.35)
    old = verdict(results, "sync echo throughput >= 50 % of bare echo, 1 client")
    new = verdict(results, report._SYNC_1_ISSUE_15)

    # THEN the old target is not met, but replaced, and the page says so, not "missed"
    assert old["met"] is False and old["replaced_by"] == report._SYNC_1_ISSUE_15
    assert new["met"] is True
    page = document._targets(results)
    assert "Targets changed" in page
    assert "Where a target is missed" not in page.split("sync echo p99")[0]
    assert "replaced" in report.console(results)


def test_a_missed_successor_is_still_a_miss():
    results = sync_results(0.25)
    assert verdict(results, report._SYNC_1_ISSUE_15)["met"] is False
    assert "Where a target is missed, and why" in document._targets(results)


def cost_results(circuit_writes: float, request_writes: float) -> dict:
    calls = {
        "dynamodb PutItem streamer-requests": {"calls": 1.0},
        "dynamodb UpdateItem streamer-requests": {"calls": request_writes - 1.0},
        "dynamodb UpdateItem streamer-connections (circuits)": {"calls": circuit_writes},
    }
    scenario = {
        "counted": {"calls": calls},
        "run_s": 0,
        "progress_received": 0,
        "totals": {"management_posts": 1.0},
    }
    return {"cost": {"scenarios": {"async, no progress": scenario}}}


TEXT = "async request: <= 3 DynamoDB writes + 1 persist per second of run"


def test_the_circuit_breakers_counts_are_not_a_requests_writes():
    # GIVEN 3 writes of the request and 0.4 of the circuit breaker's counts per request
    v = verdict(cost_results(0.4, 3.0), TEXT)
    # THEN the request is within its 3 writes, and the counts are named beside it
    assert v["met"] is True
    assert "circuit breaker's counts" in v["measured"] and "0.4" in v["measured"]


def test_a_fourth_write_of_the_request_is_a_miss():
    assert verdict(cost_results(0.0, 4.0), TEXT)["met"] is False
