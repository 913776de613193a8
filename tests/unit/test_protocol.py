"""Parsing client frames: every bad frame gets a protocol error code."""

from __future__ import annotations

import json

import pytest

from streamer.errors import ErrorCode, StreamerError, Unavailable
from streamer.protocol import MAX_JSON_DEPTH, client_id_of, error_message, parse_client_message

#: The `error.code` values of docs/protocol.md section 3, as the contract lists them.
PROTOCOL_CODES = {
    "INVALID_MESSAGE",
    "INVALID_ACTION",
    "VALIDATION_ERROR",
    "PAYLOAD_TOO_LARGE",
    "UNAUTHORIZED",
    "FORBIDDEN",
    "NOT_FOUND",
    "CONFLICT",
    "RATE_LIMITED",
    "TIMEOUT",
    "PROCESSING_FAILED",
    "CANCELLED",
    "UNAVAILABLE",
    "INTERNAL_ERROR",
}


def rejected(body) -> StreamerError:
    with pytest.raises(StreamerError) as caught:
        parse_client_message(body)
    return caught.value


def test_a_full_message_is_parsed():
    message = parse_client_message(
        json.dumps(
            {
                "action": "generate_report",
                "id": "r-42",
                "payload": {"pages": 5},
                "metadata": {"source": "ui"},
                "unknown": "ignored",
            }
        )
    )
    assert (message.action, message.id, message.payload, message.metadata) == (
        "generate_report",
        "r-42",
        {"pages": 5},
        {"source": "ui"},
    )


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        '"a string"',
        "{}",
        json.dumps({"action": 5}),
        json.dumps({"action": "bad action!"}),
        json.dumps({"action": "x" * 65}),
        json.dumps({"action": "echo", "id": ""}),
        json.dumps({"action": "echo", "id": "id with space"}),
        json.dumps({"action": "echo", "id": "caf\u00e9"}),
        json.dumps({"action": "echo", "id": "a\u0000b"}),
        json.dumps({"action": "echo", "id": 7}),
        json.dumps({"action": "echo", "payload": [1]}),
        json.dumps({"action": "echo", "payload": "x"}),
        json.dumps({"action": "echo", "metadata": {"a": 1}}),
        json.dumps({"action": "status"}),
        json.dumps({"action": "subscribe", "request_id": 12}),
        '{"action": "echo", "payload": {"n": NaN}}',
        '{"action": "echo", "payload": {"n": Infinity}}',
        b"\xff\xfe",
        None,
    ],
)
def test_malformed_frames_are_invalid_messages(body):
    assert rejected(body).code is ErrorCode.INVALID_MESSAGE


def test_nesting_past_the_limit_is_refused():
    deep = {"action": "echo", "payload": {}}
    node = deep["payload"]
    for _ in range(MAX_JSON_DEPTH + 1):
        node["n"] = {}
        node = node["n"]
    assert rejected(json.dumps(deep)).code is ErrorCode.INVALID_MESSAGE


def test_a_frame_over_128_kib_is_payload_too_large():
    body = json.dumps({"action": "echo", "payload": {"x": "y" * (128 * 1024)}})
    error = rejected(body)
    assert error.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert error.details == {"limit_bytes": 128 * 1024}


def test_huge_integers_are_kept_exactly():
    body = '{"action": "echo", "payload": {"n": 123456789012345678901234567890}}'
    message = parse_client_message(body)
    assert message.payload["n"] == 123456789012345678901234567890


def test_the_client_id_of_a_bad_frame_is_recovered_only_if_valid():
    assert client_id_of(json.dumps({"action": 5, "id": "r-1"})) == "r-1"
    assert client_id_of(json.dumps({"action": 5, "id": "bad id"})) is None
    assert client_id_of("nope") is None


def test_the_error_codes_are_exactly_the_protocols():
    assert {code.value for code in ErrorCode} == PROTOCOL_CODES


def test_unavailable_is_retryable_and_says_when_to_retry():
    answer = error_message(Unavailable("the store is unavailable", retry_after_ms=2000), "r-1")

    assert answer == {
        "type": "error",
        "request_id": "r-1",
        "error": {
            "code": "UNAVAILABLE",
            "message": "the store is unavailable",
            "retryable": True,
            "details": {"retry_after_ms": 2000},
        },
    }


def _outcome(body: str | bytes) -> object:
    try:
        return parse_client_message(body)
    except StreamerError as error:
        return (error.code, str(error), error.details)


def _nested(levels: int, opener: str = "[") -> str:
    """An echo frame whose payload holds `levels - 1` nested arrays (or objects)."""
    closer = "]" if opener == "[" else "}"
    inner = ("[" if opener == "[" else '{"k":') * (levels - 1) + "1" + closer * (levels - 1)
    return '{"action": "echo", "payload": {"x": ' + inner + "}}"


@pytest.mark.parametrize(
    "body",
    [
        '{"action": "echo", "id": "a1", "payload": {"hello": "world"}}',
        '{"action": "echo", "payload": {"word": "café"}}',
        '\ufeff{"action": "echo"}',
        "{\x00}\x00",
        "\x00{}",
        '{"action"\x00: "echo"}',
        '{"action": "echo", "payload": {"s": "' + "[{" * 40 + '"}}',
        _nested(MAX_JSON_DEPTH - 2),
        _nested(MAX_JSON_DEPTH - 1),
        _nested(MAX_JSON_DEPTH - 1, "{"),
        _nested(MAX_JSON_DEPTH, "{"),
        "[" * 40 + "]" * 40,
        "not json",
    ],
)
def test_a_frame_reads_the_same_as_text_and_as_its_utf8_bytes(body: str) -> None:
    # GIVEN a frame as API Gateway passes it (text) and as its UTF-8 bytes
    # WHEN each is parsed THEN both give the same message or the same refusal
    assert _outcome(body) == _outcome(body.encode("utf-8"))


def test_brackets_in_strings_do_not_count_as_nesting() -> None:
    body = '{"action": "echo", "payload": {"s": "' + "[{" * 40 + '"}}'
    assert parse_client_message(body).payload == {"s": "[{" * 40}


def test_nesting_at_the_limit_is_read_and_past_it_refused() -> None:
    # The frame's object is level 1 and its payload level 2: `_nested(n)` nests n + 1 deep.
    assert parse_client_message(_nested(MAX_JSON_DEPTH - 1)).action == "echo"
    assert rejected(_nested(MAX_JSON_DEPTH)).code is ErrorCode.INVALID_MESSAGE
    assert parse_client_message(_nested(MAX_JSON_DEPTH - 1, "{")).action == "echo"
    assert rejected(_nested(MAX_JSON_DEPTH, "{")).code is ErrorCode.INVALID_MESSAGE


def test_nesting_at_the_limit_is_read_when_the_frame_has_more_brackets_than_levels() -> None:
    # More brackets than the limit make the parser measure the depth: a frame exactly at
    # the limit, with a shallow sibling besides, is still read
    at_limit = _nested(MAX_JSON_DEPTH - 1).replace('{"x": ', '{"y": [[]], "x": ', 1)
    assert at_limit.count("[") + at_limit.count("{") > MAX_JSON_DEPTH
    assert parse_client_message(at_limit).payload["y"] == [[]]
    too_deep = _nested(MAX_JSON_DEPTH).replace('{"x": ', '{"y": [[]], "x": ', 1)
    assert rejected(too_deep).code is ErrorCode.INVALID_MESSAGE
