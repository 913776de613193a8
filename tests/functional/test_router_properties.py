"""Arbitrary frames at the router: always a protocol answer, never a change to accepted work."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer import config, runtime
from tests.functional import helpers
from tests.functional.helpers import Client
from tests.unit.test_protocol import PROTOCOL_CODES

ANSWER_TYPES = {
    "response",
    "acknowledgment",
    "error",
    "pong",
    "status",
    "unsubscribed",
    "progress",
    "complete",
    "watch_token",
}
EXAMPLES = int(os.environ.get("STREAMER_PROPERTY_EXAMPLES", "2000"))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
actions = st.sampled_from(
    [
        "echo",
        "generate_report",
        "ping",
        "status",
        "subscribe",
        "unsubscribe",
        "cancel",
        "watch",
        "count",
        "nope",
    ]
) | st.text(max_size=70)
ids = st.none() | st.sampled_from(["r-1", "x"]) | st.text(max_size=130)
messages = st.fixed_dictionaries(
    {"action": actions | json_values},
    optional={
        "id": ids | json_values,
        "request_id": ids | json_values,
        "user_id": ids,
        "payload": json_values
        | st.fixed_dictionaries(
            {"pages": st.integers(-5, 2000) | json_values},
            optional={"page_ms": st.integers(-1, 20000), "fail_at_page": json_values},
        ),
        "metadata": json_values,
    },
)


def nested(depth: int, opener: str) -> str:
    """A message whose payload nests `depth` levels deep: past the protocol's limit, and
    past what Python's JSON decoder can go (it raises RecursionError)."""
    closer = {"[": "]", '{"a":': "}"}[opener]
    return (
        '{"action": "echo", "id": "r-2", "payload": {"x": '
        + opener * depth
        + "1"
        + (closer * depth)
        + "}}"
    )


deep_frames = st.builds(
    nested, st.integers(min_value=30, max_value=60_000), st.sampled_from(["[", '{"a":'])
)
frames = st.one_of(
    deep_frames,
    messages.map(json.dumps),
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
)


@pytest.fixture
def victim(test_app, management, monkeypatch):
    monkeypatch.setenv(config.RATE_LIMIT_PER_S, "0")
    monkeypatch.setenv(config.MAX_ACTIVE_REQUESTS, "0")
    runtime.reset()
    owner = Client("conn-owner", user="alice", tenant="t1")
    owner.connect()
    owner.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 3}})
    return helpers.requests()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frame=frames)
def test_any_frame_gets_a_protocol_answer_and_accepted_work_is_untouched(victim, frame):
    # GIVEN alice's accepted request, and an attacker of another tenant
    attacker = Client(
        "conn-attacker",
        user="mallory",
        tenant="t2",
        permissions="requests:read:tenant,requests:cancel:tenant",
    )

    # WHEN the attacker sends any frame at all
    answer = attacker.send_raw(frame)

    # THEN the answer is a protocol message, errors carry a known code, nothing leaks
    assert answer["type"] in ANSWER_TYPES
    if answer["type"] == "error":
        assert answer["error"]["code"] in PROTOCOL_CODES
        assert answer["error"]["code"] != "INTERNAL_ERROR", answer
        assert isinstance(answer["error"]["retryable"], bool)
    assert "Traceback" not in json.dumps(answer)
    # and alice's request is exactly as it was
    owner_items = [i for i in helpers.requests() if i["owner"]["S"] == "t1#alice"]
    assert owner_items == victim


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_a_frame_nested_past_the_json_decoder_is_invalid_message(test_app, management, opener):
    # GIVEN a connected client
    client = Client("conn-deep", user="alice", tenant="t1")
    client.connect()

    # WHEN it sends a frame nested deeper than Python's JSON decoder can go
    answer = client.send_raw(nested(20_000, opener))

    # THEN the router answers INVALID_MESSAGE instead of crashing
    assert answer["type"] == "error"
    assert answer["error"]["code"] == "INVALID_MESSAGE"
