"""What a request of section 6 would cost built another way on AWS, and Streamer's floor.

Pure list-price arithmetic (`bench.prices`) over what a scenario of
`bench.cost` counted: the API Gateway messages the client sent and received
and the handler's own run time. Nothing here measures.

- **Floor**: what Streamer's design cannot avoid for the request: its
  messages (the client's frame, the route response, each post), one Lambda
  invocation per function the request must pass through, and the handler's own
  run at the processor's memory. No DynamoDB, no other Lambda time.
- **WebSocket + SQS + Lambda worker**: the router Lambda puts the request on a
  standard queue, a worker Lambda (an event source mapping, batches of one)
  runs the handler and posts progress and the result: the same messages, two
  invocations, a SendMessage, the mapping's ReceiveMessage and its
  DeleteMessage (empty receives of an idle queue are per queue, not per request).
- **WebSocket + Step Functions Express**: the router Lambda starts an Express
  execution whose one task invokes the handler's Lambda, which posts progress
  and the result: the same messages, two invocations, one Express request and
  the execution's duration (the handler's run rounded up to 100 ms, at 64 MB).

Neither alternative stores the request: no status after a reconnect, no retry
from a checkpoint, no exactly-once result, which is what Streamer's DynamoDB
calls pay for. A sync request is one invocation in any design, so only async
requests have alternatives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench import prices
from components.settings import DEFAULT_SIZES

PROCESSOR_GB = DEFAULT_SIZES["processor"].memory_mb / 1024
#: Step Functions bills an Express execution's memory in 64 MB chunks, 64 MB at least.
EXPRESS_GB = 64 / 1024
#: Lambda invocations a request cannot do without, by kind: the authorizer and
#: `$connect`; the router; the router and the worker; `$disconnect`.
FLOOR_INVOCATIONS = {"connection": 2, "sync": 1, "async": 2, "disconnection": 1}
#: An SQS message: SendMessage, ReceiveMessage, DeleteMessage.
SQS_REQUESTS = 3


@dataclass(frozen=True)
class Request:
    """What any design must carry for one request of a scenario."""

    kind: str
    #: API Gateway messages, both directions.
    messages: float
    #: The handler's own run (async requests; a sync echo's is nothing).
    run_s: float = 0.0

    @classmethod
    def of(cls, name: str, scenario: dict) -> Request:
        return cls(kind_of(name), scenario["messages"], scenario.get("run_s", 0.0))


def kind_of(name: str) -> str:
    """The kind of request a section 6 scenario is, from its name."""
    for kind in FLOOR_INVOCATIONS:
        if name.startswith(kind):
            return kind
    raise ValueError(f"no kind of request for the scenario {name!r}")


def _messages_usd(request: Request) -> float:
    return request.messages * prices.WEBSOCKET_MESSAGE.usd


def _work_usd(request: Request) -> float:
    return request.run_s * PROCESSOR_GB * prices.LAMBDA_ARM_GB_SECOND.usd


def express_billed_s(run_s: float) -> float:
    """An Express execution's billed duration: rounded up to 100 ms, 100 ms at least."""
    tenths = math.ceil(round(run_s * 10, 6))
    return max(1, tenths) / 10


def floor_usd(request: Request) -> float:
    return (
        _messages_usd(request)
        + FLOOR_INVOCATIONS[request.kind] * prices.LAMBDA_REQUEST.usd
        + _work_usd(request)
    )


def sqs_worker_usd(request: Request) -> float | None:
    if request.kind != "async":
        return None
    return (
        _messages_usd(request)
        + 2 * prices.LAMBDA_REQUEST.usd
        + SQS_REQUESTS * prices.SQS_REQUEST.usd
        + _work_usd(request)
    )


def express_usd(request: Request) -> float | None:
    if request.kind != "async":
        return None
    return (
        _messages_usd(request)
        + 2 * prices.LAMBDA_REQUEST.usd
        + prices.STEP_FUNCTIONS_EXPRESS_REQUEST.usd
        + express_billed_s(request.run_s) * EXPRESS_GB * prices.STEP_FUNCTIONS_EXPRESS_GB_SECOND.usd
        + _work_usd(request)
    )


def _per_million(usd: float | None) -> float | None:
    return None if usd is None else usd * 1e6


def streamer_usd(request: Request, usd_per_million: dict) -> float:
    """Streamer's cost of the request as the others are counted: what `bench.cost`
    priced from the counts (messages, invocations, DynamoDB when its units were
    measured), with the handler's own run for Lambda time."""
    counted = ("api_gateway_messages", "lambda_requests", "dynamodb")
    return sum(usd_per_million.get(k, 0.0) for k in counted) / 1e6 + _work_usd(request)


def comparison(name: str, scenario: dict) -> dict:
    """A scenario's cost per million requests next to the floor and the alternatives.

    Every column counts Lambda time as the handler's own run at the processor's
    memory: the durations `bench.cost` measures are this machine's, not Lambda's
    (and the processor runs a batch's records at once), so they would compare
    a laptop with a price list. Streamer's overhead here is its DynamoDB calls,
    its extra invocations and messages.
    """
    request = Request.of(name, scenario)
    usd = scenario["totals"]["usd_per_million"]
    streamer = streamer_usd(request, usd) * 1e6
    floor = floor_usd(request) * 1e6
    return {
        "streamer": streamer,
        "dynamodb_priced": "dynamodb" in usd,
        "floor": floor,
        "ratio_to_floor": streamer / floor,
        "sqs_worker": _per_million(sqs_worker_usd(request)),
        "step_functions_express": _per_million(express_usd(request)),
    }


def console(scenarios: dict) -> str:
    """The lines `python -m bench` prints for section 6: each request's $/M and ratio."""
    priced = all(comparison(n, s)["dynamodb_priced"] for n, s in scenarios.items())
    lines = [
        "cost per million requests: Streamer / floor (ratio); WebSocket + SQS + Lambda; "
        "WebSocket + Step Functions Express"
        + ("" if priced else " (DynamoDB not priced: its units were not measured)")
    ]
    for name, scenario in scenarios.items():
        c = comparison(name, scenario)
        others = "; ".join(
            "-" if c[k] is None else f"${c[k]:,.2f}"
            for k in ("sqs_worker", "step_functions_express")
        )
        lines.append(
            f"  {name}: ${c['streamer']:,.2f} / ${c['floor']:,.2f} "
            f"({c['ratio_to_floor']:.2f}x); {others}"
        )
    return "\n".join(lines)
