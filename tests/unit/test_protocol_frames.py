"""The protocol's frames exactly as a client sees them (pure: docs/protocol.md sections 2 and 3).

Each refused frame's whole `error` object (code, message, field) and each
server message's whole body are pinned: a client reads both.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from streamer import protocol
from streamer.errors import StreamerError
from streamer.protocol import ClientMessage, client_id_of, parse_client_message

IDS = "1-128 characters of A-Z a-z 0-9 _ . : -"


def refused(body: Any) -> dict[str, Any]:
    with pytest.raises(StreamerError) as raised:
        parse_client_message(body)
    return raised.value.to_dict()


def invalid(message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": "INVALID_MESSAGE", "message": message, "retryable": False}
    if field is not None:
        error["details"] = {"field": field}
    return error


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (None, invalid("message is empty")),
        ("{", invalid("message is not valid JSON")),
        ('{"action": "a", "payload": {"n": NaN}}', invalid("message is not valid JSON")),
        (b"\xff", invalid("message is not valid JSON")),
        ("[1]", invalid("message must be a JSON object")),
        (
            '{"action": "a b"}',
            invalid("`action` must be 1-64 characters of A-Z a-z 0-9 _ . -", "action"),
        ),
        ('{"action": "a", "id": 5}', invalid(f"`id` must be {IDS}", "id")),
        ('{"action": "a", "id": "a b"}', invalid(f"`id` must be {IDS}", "id")),
        ('{"action": "a", "payload": []}', invalid("`payload` must be an object", "payload")),
        (
            '{"action": "a", "metadata": {"k": 1}}',
            invalid("`metadata` must be an object of strings", "metadata"),
        ),
        (
            '{"action": "a", "metadata": []}',
            invalid("`metadata` must be an object of strings", "metadata"),
        ),
        (
            '{"action": "subscribe", "topic": 7}',
            invalid(f"`topic` must be {IDS}", "topic"),
        ),
        (
            '{"action": "subscribe", "topic": "a b"}',
            invalid(f"`topic` must be {IDS}", "topic"),
        ),
        (
            '{"action": "status"}',
            invalid(f"`status` needs a `request_id` of {IDS}", "request_id"),
        ),
        (
            '{"action": "cancel", "request_id": "a b"}',
            invalid(f"`cancel` needs a `request_id` of {IDS}", "request_id"),
        ),
        (
            '{"action": "subscribe", "topic": "t", "request_id": 3}',
            invalid(f"`subscribe` needs a `request_id` of {IDS}", "request_id"),
        ),
        (
            '{"action": "status", "request_id": "r", "user_id": 4}',
            invalid(f"`user_id` must be {IDS}", "user_id"),
        ),
        (
            '{"action": "status", "request_id": "r", "user_id": "a b"}',
            invalid(f"`user_id` must be {IDS}", "user_id"),
        ),
    ],
)
def test_each_refused_frame_says_what_is_wrong_and_where(body: Any, error: dict) -> None:
    assert refused(body) == error


def test_metadata_over_its_limits_names_the_limits() -> None:
    assert refused(json.dumps({"action": "a", "metadata": {"k": "v" * 1025}})) == {
        "code": "PAYLOAD_TOO_LARGE",
        "message": "`metadata` is limited to 32 entries, keys of 64 and values of 1024 characters",
        "retryable": False,
        "details": {"field": "metadata"},
    }


def test_a_frame_over_the_limit_says_its_size() -> None:
    body = json.dumps({"action": "a", "payload": {"p": "x" * 131_072}})
    assert refused(body) == {
        "code": "PAYLOAD_TOO_LARGE",
        "message": f"message is {len(body)} bytes; the limit is 131072",
        "retryable": False,
        "details": {"limit_bytes": 131072},
    }


def test_a_plain_frame_reads_as_an_action_with_empty_payload_and_metadata() -> None:
    assert parse_client_message('{"action": "a"}') == ClientMessage(action="a")
    assert parse_client_message(
        '{"action": "a", "payload": null, "metadata": null, "topic": "t", "request_id": "r"}'
    ) == ClientMessage(action="a", payload={}, metadata={})


def test_a_frame_is_read_as_utf8_text_a_leading_byte_order_mark_ignored() -> None:
    # RFC 8259 section 8.1: a parser MAY ignore a byte order mark rather than refuse it.
    for body in (
        '\ufeff{"action": "echo", "payload": {"s": "é"}}',
        '{"action": "echo", "payload": {"s": "é"}}'.encode(),
    ):
        assert parse_client_message(body) == ClientMessage(action="echo", payload={"s": "é"})


def test_a_frame_of_bytes_is_read_as_json_loads_reads_bytes() -> None:
    # json.loads decodes bytes with "surrogatepass": an escaped lone surrogate and the
    # same code point sent UTF-8 encoded read alike, as they did before the frame had a
    # decoder of its own.
    escaped = parse_client_message(b'{"action": "echo", "payload": {"s": "\\ud800"}}')
    encoded = parse_client_message(b'{"action": "echo", "payload": {"s": "\xed\xa0\x80"}}')
    assert escaped == encoded == ClientMessage(action="echo", payload={"s": "\ud800"})
    assert encoded.payload == json.loads(b'{"s": "\xed\xa0\x80"}')


def test_a_topic_subscription_names_the_topic_and_no_request() -> None:
    for action in ("subscribe", "unsubscribe"):
        message = parse_client_message(json.dumps({"action": action, "topic": "news.eu"}))
        assert (message.topic, message.request_id, message.user_id) == ("news.eu", None, None)
        assert message.is_system


def test_a_request_action_names_the_request_and_its_owner() -> None:
    for action in ("status", "subscribe", "unsubscribe", "cancel", "watch"):
        body = {"action": action, "request_id": "r-1", "user_id": "bob", "topic": "ignored"}
        if action in ("subscribe", "unsubscribe"):
            del body["topic"]
        message = parse_client_message(json.dumps(body))
        assert (message.request_id, message.user_id, message.topic) == ("r-1", "bob", None)
    own = parse_client_message('{"action": "status", "request_id": "r-1"}')
    assert own.user_id is None


def test_an_application_action_ignores_system_fields() -> None:
    message = parse_client_message('{"action": "echo", "request_id": 5, "topic": 3}')
    assert (message.request_id, message.user_id, message.topic) == (None, None, None)
    assert not message.is_system


def test_an_id_that_is_not_valid_json_text_is_not_recovered() -> None:
    assert client_id_of(None) is None
    assert client_id_of('{"id": "r-1", "n": NaN}') is None
    assert client_id_of('{"id": "r-1", "n": Infinity}') is None
    assert client_id_of('["r-1"]') is None
    assert client_id_of('{"id": 5}') is None
    assert client_id_of(b'{"id": "r-2"}') == "r-2"


def test_a_flat_object_has_depth_one() -> None:
    assert protocol._depth({}, 32) == 1
    assert protocol._depth(5, 32) == 0
    assert protocol._depth([[1]], 32) == 2


def test_depth_is_the_deepest_branch_of_objects_and_arrays_and_stops_past_the_limit() -> None:
    value = {"a": 1, "b": [2, {"c": []}], "d": {"e": {}}}
    assert protocol._depth(value, 32) == 4
    assert protocol._depth([[], [[[]]], {}], 32) == 4
    assert protocol._depth(value, 2) == 3
    assert protocol._depth(value, 4) == 4


def test_server_messages_are_compact_utf8_json_and_refuse_nan() -> None:
    assert protocol.encode({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'
    with pytest.raises(ValueError):
        protocol.encode({"a": math.nan})


def test_timestamps_are_integer_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol.time, "time", lambda: 1_700_000_000.1234)
    assert protocol.now_ms() == 1_700_000_000_123
    assert protocol.pong_message() == {"type": "pong", "timestamp": 1_700_000_000_123}


def test_the_server_messages() -> None:
    assert protocol.response_message("r", data={"x": 1}) == {
        "type": "response",
        "request_id": "r",
        "success": True,
        "data": {"x": 1},
    }
    assert protocol.response_message("r", error={"code": "TIMEOUT"}) == {
        "type": "response",
        "request_id": "r",
        "success": False,
        "error": {"code": "TIMEOUT"},
    }
    assert protocol.acknowledgment_message("r", 9000) == {
        "type": "acknowledgment",
        "request_id": "r",
        "status": "QUEUED",
        "estimated_duration_ms": 9000,
    }
    assert protocol.progress_message("r", 3, 50.0, "half", {"k": 1}, 77) == {
        "type": "progress",
        "request_id": "r",
        "seq": 3,
        "percentage": 50.0,
        "message": "half",
        "timestamp": 77,
        "metadata": {"k": 1},
    }
    assert "metadata" not in protocol.progress_message("r", 3, 50.0, "", {}, 77)
    assert "metadata" not in protocol.progress_message("r", 3, 50.0, "", None, 77)
    assert protocol.complete_message("r", 4, "COMPLETED", result=[1], timestamp=78) == {
        "type": "complete",
        "request_id": "r",
        "seq": 4,
        "status": "COMPLETED",
        "timestamp": 78,
        "result": [1],
    }
    assert protocol.complete_message("r", 4, "FAILED", error={"code": "X"}, timestamp=78) == {
        "type": "complete",
        "request_id": "r",
        "seq": 4,
        "status": "FAILED",
        "timestamp": 78,
        "error": {"code": "X"},
    }
    assert protocol.status_message({"status": "PENDING"}) == {
        "type": "status",
        "request": {"status": "PENDING"},
    }
    assert protocol.unsubscribed_message("r") == {"type": "unsubscribed", "request_id": "r"}
    assert protocol.watch_token_message("r", "tok", 99) == {
        "type": "watch_token",
        "request_id": "r",
        "token": "tok",
        "expires_at": 99,
    }


def test_an_error_without_a_client_id_carries_no_request_id() -> None:
    from streamer.errors import ErrorCode

    assert protocol.error_message(StreamerError(ErrorCode.NOT_FOUND, "gone")) == {
        "type": "error",
        "error": {"code": "NOT_FOUND", "message": "gone", "retryable": False},
    }
