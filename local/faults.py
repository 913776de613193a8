"""Fault injection for the local stack: `python -m local --faults` and its `/_faults` API.

Without `--faults` none of this is active and `/_faults` answers 404. With it,
the stack's HTTP port takes JSON commands that break things the way AWS
breaks them, each at the edge where AWS would (the runtime is unchanged):

- `GET /_faults`: what is armed, what was injected, the mapping's counters.
- `POST /_faults/kill {"request_id"}`: SIGKILL the processor worker running
  that request. It writes and sends nothing more; the mapping sees
  `Runtime.ExitError` and retries the batch; the lease expires and the
  sweeper re-drives the request.
- `POST /_faults/claims {"request_id"?, "count"?}`: the processor's next
  claims (of that request, or of any) fail with
  `ProvisionedThroughputExceededException`, as when DynamoDB throttles past
  the SDK's retries.
- `POST /_faults/management {"connection_id", "status", "count"?}`: the next
  posts to that connection are answered 410 `GoneException`, 429
  `LimitExceededException` or 500 `InternalServerErrorException`.
- `POST /_faults/redeliver {"request_id", "times"?}`: the next stream record
  of that request reaches the processor `times` times.
- `POST /_faults/mapping {"enabled"}`: stop or resume invoking the processor;
  records wait, as with a disabled mapping.

Answers are JSON; a bad command gets 400, an unknown path 404, and a kill
that finds no worker running the request 409.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from local.management import HttpResponse, connection_of, error_response

PREFIX = "/_faults"

#: `@connections` errors the management fault can answer with, as API Gateway words them.
MANAGEMENT_ERRORS = {
    410: ("GoneException", "The connection is gone"),
    429: ("LimitExceededException", "Rate exceeded"),
    500: ("InternalServerErrorException", "Internal server error"),
}

THROTTLED = "ProvisionedThroughputExceededException"


def _new_value(record: dict, name: str) -> str | None:
    return record.get("dynamodb", {}).get("NewImage", {}).get(name, {}).get("S")


def request_id_of(record: dict) -> str | None:
    """The request a Lambda-shaped stream record of the requests table is about."""
    return _new_value(record, "request_id")


class BadCommand(ValueError):
    """A `/_faults` command the API cannot carry out as given; the message says why."""


@dataclass
class _Armed:
    request_id: str | None
    remaining: int


class FaultPlan:
    """What is armed and what was injected; consulted by the stack's threads at its edges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._management: dict[str, list[int]] = {}
        self._claims: list[_Armed] = []
        self._redeliveries: dict[str, int] = {}
        self.injected: Counter[str] = Counter()

    def arm_management(self, connection_id: str, status: int, count: int) -> None:
        with self._lock:
            self._management.setdefault(connection_id, []).extend([status] * count)

    def arm_claims(self, request_id: str | None, count: int) -> None:
        with self._lock:
            self._claims.append(_Armed(request_id, count))

    def arm_redelivery(self, request_id: str, times: int) -> None:
        with self._lock:
            self._redeliveries[request_id] = times

    def management_answer(self, connection_id: str) -> int | None:
        """The status the next post to this connection gets instead of its own, if armed."""
        with self._lock:
            armed = self._management.get(connection_id)
            if not armed:
                return None
            status = armed.pop(0)
            if not armed:
                del self._management[connection_id]
            self.injected[f"management_{status}"] += 1
            return status

    def invocation_instructions(self, event: dict) -> dict:
        """The calls a processor invocation must fail: claims of its PENDING records, if armed."""
        throttled = []
        with self._lock:
            for record in event.get("Records", []):
                request_id = request_id_of(record)
                if _new_value(record, "status") != "PENDING" or request_id is None:
                    continue
                for armed in self._claims:
                    if armed.remaining > 0 and armed.request_id in (None, request_id):
                        armed.remaining -= 1
                        throttled.append(record["dynamodb"]["Keys"])
                        self.injected["claims_throttled"] += 1
                        break
            self._claims = [armed for armed in self._claims if armed.remaining > 0]
        return {"throttle_claims": throttled} if throttled else {}

    def copies(self, record: dict) -> int:
        """How many times the mapping hands this record to the processor (normally once)."""
        request_id = request_id_of(record)
        with self._lock:
            times = self._redeliveries.pop(request_id, 1) if request_id else 1
            if times > 1:
                self.injected["records_redelivered"] += times - 1
        return times

    def armed(self) -> dict[str, Any]:
        with self._lock:
            return {
                "management": {c: list(s) for c, s in self._management.items()},
                "claims": [
                    {"request_id": a.request_id, "count": a.remaining} for a in self._claims
                ],
                "redeliveries": dict(self._redeliveries),
            }


class CallFaults:
    """In a processor worker process: fails the AWS calls its invocation was told to fail.

    A botocore `before-call` hook answers in DynamoDB's place, so the runtime
    sees exactly the error the SDK raises when DynamoDB throttles past its
    retries; every client the worker creates gets the hook.
    """

    def __init__(self) -> None:
        # The keys of the requests whose next claim fails.
        self._throttle_claims: list[dict] = []

    @classmethod
    def install(cls) -> CallFaults:
        from local.calls import register_botocore_handler

        faults = cls()
        # Before the runtime makes its first client.
        register_botocore_handler("before-call.dynamodb.UpdateItem", faults._before_update)
        return faults

    def arm(self, instructions: dict) -> None:
        self._throttle_claims = list(instructions.get("throttle_claims", []))

    def _before_update(self, params: dict, **_: Any) -> tuple | None:
        if not self._throttle_claims:
            return None
        body = json.loads(params.get("body") or b"{}")
        key = body.get("Key")
        values = body.get("ExpressionAttributeValues", {}).values()
        is_claim = {"S": "PENDING"} in values and {"S": "PROCESSING"} in values
        if not is_claim or key not in self._throttle_claims:
            return None
        self._throttle_claims.remove(key)
        return _throttled_answer()


def _throttled_answer() -> tuple:
    from botocore.awsrequest import AWSResponse

    message = "The level of configured provisioned throughput for the table was exceeded."
    parsed = {
        "Error": {"Code": THROTTLED, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {}},
    }
    return AWSResponse("", 400, {}, None), parsed


def _json(status: int, content: Any) -> HttpResponse:
    return HttpResponse(status, json.dumps(content).encode(), {"Content-Type": "application/json"})


_REQUIRED = object()


def _field(command: dict, name: str, kind: type, default: Any = _REQUIRED) -> Any:
    """A field of a command, of exactly this type (a bool is no int here)."""
    if name not in command:
        if default is _REQUIRED:
            raise BadCommand(f"{name} is required")
        return default
    value = command[name]
    if type(value) is not kind:
        raise BadCommand(f"{name} must be of JSON type {_JSON_TYPES[kind]}")
    return value


def _count(command: dict, name: str, default: int) -> int:
    value = _field(command, name, int, default)
    if value < 1:
        raise BadCommand(f"{name} must be at least 1")
    return value


_JSON_TYPES = {str: "string", int: "integer", bool: "boolean"}


def _request_ids(invocation) -> list[str]:
    records = invocation.event.get("Records", [])
    return [r for r in map(request_id_of, records) if r is not None]


def _describe(invocation) -> dict[str, Any]:
    return {
        "invocation": invocation.aws_request_id,
        "stopped": invocation.stopped,
        "request_ids": _request_ids(invocation),
    }


class FaultControl:
    """The `/_faults` HTTP API and the management API's injected answers.

    `attach` gives it the processor (an `IsolatedFunction`) and the event
    source mapping once the stack has made them.
    """

    def __init__(self) -> None:
        self.plan = FaultPlan()
        self._processor = None
        self._mapping = None

    def attach(self, processor, mapping) -> None:
        self._processor = processor
        self._mapping = mapping

    def intercept(self, method: str, path: str, body: bytes) -> HttpResponse | None:
        """Answer a `/_faults` command or an armed `@connections` post; None otherwise."""
        bare = path.split("?", 1)[0]
        if bare == PREFIX or bare.startswith(PREFIX + "/"):
            try:
                return self._command(method, bare[len(PREFIX) :], body)
            except BadCommand as error:
                return _json(400, {"message": str(error)})
        connection_id = connection_of(bare)
        if method == "POST" and connection_id is not None:
            status = self.plan.management_answer(connection_id)
            if status is not None:
                return error_response(status, *MANAGEMENT_ERRORS[status])
        return None

    def _command(self, method: str, route: str, body: bytes) -> HttpResponse:
        if method == "GET" and route in ("", "/"):
            return _json(200, self.state())
        commands = {
            "/kill": self._kill,
            "/claims": self._claims,
            "/management": self._management,
            "/redeliver": self._redeliver,
            "/mapping": self._set_mapping,
        }
        if method != "POST" or route not in commands:
            return _json(404, {"message": f"no fault {method} {PREFIX}{route}"})
        try:
            command = json.loads(body or b"{}")
        except ValueError:
            raise BadCommand("the body must be a JSON object") from None
        if not isinstance(command, dict):
            raise BadCommand("the body must be a JSON object")
        return commands[route](command)

    def state(self) -> dict[str, Any]:
        stopped = self._processor.stopped() if self._processor is not None else []
        return {
            "armed": self.plan.armed(),
            "injected": dict(self.plan.injected),
            "stopped": [_describe(invocation) for invocation in stopped],
            "mapping": self._mapping.stats() if self._mapping is not None else {},
        }

    def _kill(self, command: dict) -> HttpResponse:
        request_id = _field(command, "request_id", str)
        running = self._processor.running() if self._processor is not None else []
        killed = [
            _describe(invocation)
            for invocation in running
            if request_id in _request_ids(invocation) and self._processor.kill(invocation)
        ]
        if not killed:
            return _json(409, {"message": f"no processor invocation is running {request_id}"})
        return _json(200, {"killed": killed})

    def _claims(self, command: dict) -> HttpResponse:
        request_id = _field(command, "request_id", str, None)
        count = _count(command, "count", 1)
        self.plan.arm_claims(request_id, count)
        return _json(200, {"armed": self.plan.armed()["claims"]})

    def _management(self, command: dict) -> HttpResponse:
        connection_id = _field(command, "connection_id", str)
        status = _field(command, "status", int)
        if status not in MANAGEMENT_ERRORS:
            raise BadCommand(f"status must be one of {sorted(MANAGEMENT_ERRORS)}")
        count = _count(command, "count", 1)
        self.plan.arm_management(connection_id, status, count)
        return _json(200, {"armed": self.plan.armed()["management"]})

    def _redeliver(self, command: dict) -> HttpResponse:
        request_id = _field(command, "request_id", str)
        times = _count(command, "times", 2)
        self.plan.arm_redelivery(request_id, times)
        return _json(200, {"armed": self.plan.armed()["redeliveries"]})

    def _set_mapping(self, command: dict) -> HttpResponse:
        enabled = _field(command, "enabled", bool)
        if self._mapping is None:
            raise BadCommand("the mapping has not started")
        self._mapping.set_enabled(enabled)
        return _json(200, {"mapping": self._mapping.stats()})
