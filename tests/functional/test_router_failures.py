"""Every failure the router can meet is answered as a protocol error that names the request.

A client waits for the answer to the `id` it sent; an answer without it, or a
bare API Gateway error, leaves the client waiting forever. Outages of the
store (DynamoDB unreachable, slow, throttling, failing) are `UNAVAILABLE`,
retryable, with `details.retry_after_ms`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from streamer import config, runtime, store
from streamer.protocol import ID_PATTERN
from tests.functional.failing_app import FAILURES, STAGES
from tests.functional.helpers import Client
from tests.unit.test_protocol import PROTOCOL_CODES

EXAMPLES = int(os.environ.get("STREAMER_FAILURE_EXAMPLES", "200"))
ENDPOINT = "https://dynamodb.us-east-1.amazonaws.com"


def _client_error(code: str, status: int) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetItem")  # type: ignore[arg-type]


#: How DynamoDB fails as botocore reports it once its retries are spent.
OUTAGES: dict[str, Callable[[], Exception]] = {
    "read_timeout": lambda: ReadTimeoutError(endpoint_url=ENDPOINT, error="Read timed out."),
    "connection_refused": lambda: EndpointConnectionError(endpoint_url=ENDPOINT),
    "throttled": lambda: _client_error("ProvisionedThroughputExceededException", 400),
    "server_error": lambda: _client_error("InternalServerError", 500),
}
#: Failures raised by the store's functions themselves.
STORE_FAILURES: dict[str, Callable[[], Exception]] = {
    "store_unavailable": lambda: store.StoreUnavailable("ProvisionedThroughputExceededException"),
    "store_bug": lambda: RuntimeError("secret arn:aws:dynamodb:us-east-1:1:table/x"),
}


@dataclass
class Fault:
    """From its `from_call`-th call on (an outage lasts), every call fails with `kind`."""

    kind: str
    from_call: int
    calls: int = 0
    fired: bool = False

    @property
    def is_outage(self) -> bool:
        return self.kind != "store_bug"

    def next_call(self) -> None:
        self.calls += 1
        if self.calls >= self.from_call:
            self.fired = True
            raise (OUTAGES.get(self.kind) or STORE_FAILURES[self.kind])()


@contextlib.contextmanager
def injected(fault: Fault | None) -> Iterator[None]:
    """Fail DynamoDB calls (under PynamoDB and the store) or the store's own functions."""
    with pytest.MonkeyPatch.context() as patch:
        if fault is not None and fault.kind in OUTAGES:
            original = BaseClient._make_api_call

            def make_api_call(client: BaseClient, operation: str, params: dict) -> dict:
                if client.meta.service_model.service_name == "dynamodb":
                    fault.next_call()
                return original(client, operation, params)

            patch.setattr(BaseClient, "_make_api_call", make_api_call)
        elif fault is not None:
            for name, function in vars(store).items():
                public = inspect.isfunction(function) and not name.startswith("_")
                if public and function.__module__ == store.__name__:
                    patch.setattr(store, name, _failing(function, fault))
        yield


def _failing(function: Callable, fault: Fault) -> Callable:
    def call(*args, **kwargs):
        fault.next_call()
        return function(*args, **kwargs)

    return call


def expected_request_id(frame: str) -> str | None:
    """The `id` a frame carries, as a client reads its own message."""
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    candidate = data.get("id") if isinstance(data, dict) else None
    return candidate if isinstance(candidate, str) and ID_PATTERN.fullmatch(candidate) else None


def failure_of(answer: dict) -> dict | None:
    """The error object of an answer that reports a failure."""
    if answer["type"] == "error":
        return answer["error"]
    if answer["type"] == "response" and answer["success"] is False:
        return answer["error"]
    return None


handler_failures = st.sampled_from(
    [None] + [f"{stage}_{name}" for stage in STAGES for name in FAILURES]
)
#: Every kind of message, named: application actions, system actions, topics.
KINDS = (
    "fail_sync",
    "fail_async",
    "nope",
    "status",
    "subscribe",
    "unsubscribe",
    "cancel",
    "watch",
    "subscribe_topic",
    "unsubscribe_topic",
    "ping",
)


def message_of(kind: str, fail: str | None, target: str, owner: str | None) -> dict:
    if kind in ("fail_sync", "fail_async", "nope"):
        return {"action": kind, "payload": {} if fail is None else {"fail": fail}}
    if kind.endswith("_topic"):
        return {"action": kind.removesuffix("_topic"), "topic": "news"}
    if kind == "ping":
        return {"action": "ping"}
    message = {"action": kind, "request_id": target}
    return message if owner is None else {**message, "user_id": owner}


ids = st.none() | st.sampled_from(["m-1", "m-2"]) | st.from_regex(ID_PATTERN, fullmatch=True)
well_formed = st.builds(
    lambda message, id_: json.dumps(message if id_ is None else {**message, "id": id_}),
    st.builds(
        message_of,
        st.sampled_from(KINDS),
        handler_failures,
        st.sampled_from(["r-1", "r-unknown"]),
        st.sampled_from([None, "alice", "bob"]),
    ),
    ids,
)
malformed = st.sampled_from(
    [
        "{not json",
        "[]",
        '{"action": 3, "id": "m-3"}',
        '{"action": "fail_sync", "id": "m-3", "payload": []}',
        '{"action": "status", "id": "m-3"}',
        '{"action": "fail_sync", "id": "bad id!"}',
        '{"id": "m-3", "action": "fail_sync", "payload": ' + "[" * 5000 + "]" * 5000 + "}",
    ]
)
faults = st.one_of(
    st.none(),
    st.none(),
    st.builds(Fault, st.sampled_from([*OUTAGES, *STORE_FAILURES]), st.integers(1, 6)),
)


#: Errors the router answers from the frame alone, before any store call of its own.
DECIDED_BY_THE_FRAME = frozenset({"INVALID_MESSAGE", "INVALID_ACTION", "VALIDATION_ERROR"})


@pytest.fixture
def failing_stack(aws, management, monkeypatch):
    monkeypatch.setenv(config.APP_MODULE, "tests.functional.failing_app")
    # A burst larger than the messages of one example (at most 3 a connection): the rate
    # limit's shared write comes once a burst and lets messages through when it fails, so
    # an outage it met would not reach the answer; refusals are tests/functional/
    # test_rate_limit.py's.
    monkeypatch.setenv(config.RATE_LIMIT_PER_S, "1")
    monkeypatch.setenv(config.RATE_LIMIT_BURST, "10")
    monkeypatch.setenv(config.WATCH_TOKEN_SECRET, "s" * 32)
    # Counted (a store call) but never reached: alice's queued requests pile up.
    monkeypatch.setenv(config.MAX_ACTIVE_REQUESTS, "100000")
    runtime.reset()
    owner = Client("conn-owner", user="alice", tenant="t1")
    owner.connect()
    owner.send({"action": "fail_async", "id": "r-1", "payload": {}})


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    frame=st.one_of(well_formed, well_formed, well_formed, malformed),
    sent_before=st.sampled_from([0, 0, 1, 2]),
    fault=faults,
)
def test_every_failure_is_a_protocol_error_with_the_request_id(
    failing_stack, frame, sent_before, fault
):
    # GIVEN a connection of alice that already sent this frame `sent_before` times
    client = Client(f"conn-{uuid.uuid4().hex}", user="alice", tenant="t1")
    client.connect()
    for _ in range(sent_before):
        client.send_raw(frame)

    # WHEN it sends the frame again while the store or DynamoDB fails (or not)
    with injected(fault):
        answer = client.send_raw(frame)

    # THEN it gets a protocol answer; a failure has a code of docs/protocol.md and the id
    request_id = expected_request_id(frame)
    error = failure_of(answer)
    text = json.dumps(answer)
    event(f"answer: {error['code'] if error else answer['type']}")
    event(f"fault fired: {fault.kind if fault and fault.fired else None}")
    assert "Traceback" not in text and "arn:aws" not in text
    if error is None:
        return
    assert error["code"] in PROTOCOL_CODES, answer
    assert isinstance(error["retryable"], bool)
    if request_id is not None:
        assert answer.get("request_id") == request_id, answer
    # and an outage that reached the answer is UNAVAILABLE, retryable, with a delay. What the
    # frame alone decides (unreadable, unknown action, invalid payload) is refused whatever
    # the store does: an outage met only by the rate limit's report (which lets messages
    # through when it cannot write) does not change that.
    if (
        fault is not None
        and fault.fired
        and fault.is_outage
        and answer["type"] == "error"
        and error["code"] not in DECIDED_BY_THE_FRAME
    ):
        assert error["code"] == "UNAVAILABLE", answer
        assert error["retryable"] is True
        assert error["details"]["retry_after_ms"] > 0


@pytest.mark.parametrize("kind", sorted(OUTAGES))
def test_dynamodb_down_at_the_first_call_is_unavailable_with_the_request_id(failing_stack, kind):
    # GIVEN alice's connection, and then DynamoDB fails every call
    client = Client("conn-down", user="alice", tenant="t1")
    client.connect()

    # WHEN she sends a request with an id
    with injected(Fault(kind, from_call=1)):
        answer = client.send({"action": "fail_async", "id": "during-outage", "payload": {}})

    # THEN the answer is UNAVAILABLE, retryable after a delay, for her request
    assert answer["type"] == "error" and answer["request_id"] == "during-outage"
    assert answer["error"]["code"] == "UNAVAILABLE"
    assert answer["error"]["retryable"] is True
    assert answer["error"]["details"]["retry_after_ms"] > 0


def test_an_entry_point_failure_is_answered_with_the_request_id(failing_stack, monkeypatch):
    # GIVEN a function whose configuration cannot be read
    monkeypatch.setenv(config.ASYNC_THRESHOLD_MS, "soon")
    runtime.reset()
    client = Client("conn-owner", user="alice", tenant="t1")

    # WHEN a message with an id arrives
    answer = client.send({"action": "fail_sync", "id": "m-9"})

    # THEN it is answered, not dropped: an INTERNAL_ERROR for that request, with a correlation id
    assert answer["type"] == "error" and answer["request_id"] == "m-9"
    assert answer["error"]["code"] == "INTERNAL_ERROR"
    assert answer["error"]["details"]["correlation_id"]


def test_a_sync_answer_the_store_could_not_keep_still_reaches_the_caller(
    failing_stack, monkeypatch
):
    # GIVEN DynamoDB fails once the sync handler has run
    client = Client("conn-sync", user="alice", tenant="t1")
    client.connect()

    def unavailable(*args, **kwargs):
        raise store.StoreUnavailable("ProvisionedThroughputExceededException")

    monkeypatch.setattr(store, "finish_request", unavailable)

    # WHEN alice runs a sync action with an id
    answer = client.send({"action": "fail_sync", "id": "s-1", "payload": {}})

    # THEN she gets its result, not an error about storing it
    assert answer["type"] == "response" and answer["request_id"] == "s-1"
    assert answer["success"] is True and answer["data"] == {"ok": True}
