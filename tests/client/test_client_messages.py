"""The client's pure parts: message parsing and encoding, error types, backoff."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client import errors
from client.errors import ErrorInfo
from client.messages import (
    MAX_MESSAGE_BYTES,
    Acknowledgment,
    Completion,
    Pong,
    Progress,
    Rejection,
    RequestSnapshot,
    Response,
    Unsubscribed,
    encode_request,
    encode_system,
    is_valid_request_id,
    new_request_id,
    parse_server_message,
)
from client.reconnect import ReconnectPolicy


def test_parses_every_server_message_type_into_its_typed_view():
    # GIVEN one message of each type, shaped as docs/protocol.md section 3 writes them
    messages = [
        {
            "type": "acknowledgment",
            "request_id": "r",
            "status": "QUEUED",
            "estimated_duration_ms": 9,
        },
        {"type": "response", "request_id": "r", "success": True, "data": {"echo": {}}},
        {
            "type": "progress",
            "request_id": "r",
            "seq": 2,
            "percentage": 40,
            "message": "page 2 of 5",
            "metadata": {"page": 2},
            "timestamp": 1,
        },
        {"type": "complete", "request_id": "r", "seq": 6, "status": "COMPLETED", "result": 7},
        {"type": "error", "request_id": "r", "error": {"code": "NOT_FOUND", "message": "no"}},
        {"type": "pong"},
        {
            "type": "status",
            "request": {"request_id": "r", "action": "a", "status": "PENDING", "progress": 0},
        },
        {"type": "unsubscribed", "request_id": "r"},
    ]
    # WHEN they are parsed
    parsed = [parse_server_message(json.dumps(m)) for m in messages]
    # THEN each becomes its typed view with its fields
    assert [type(p) for p in parsed] == [
        Acknowledgment,
        Response,
        Progress,
        Completion,
        Rejection,
        Pong,
        RequestSnapshot,
        Unsubscribed,
    ]
    assert parsed[0] == Acknowledgment("r", 9)
    assert parsed[2] == Progress("r", 2, 40.0, "page 2 of 5", {"page": 2}, 1)
    assert isinstance(parsed[3], Completion)
    assert (parsed[3].seq, parsed[3].result, parsed[3].error) == (6, 7, None)
    assert isinstance(parsed[4], Rejection)
    assert parsed[4].error.code == "NOT_FOUND"
    assert parsed[4].error.retryable is False


def test_a_failed_complete_carries_its_error_object():
    # GIVEN a FAILED complete
    text = json.dumps(
        {
            "type": "complete",
            "request_id": "r",
            "seq": 3,
            "status": "FAILED",
            "error": {"code": "PROCESSING_FAILED", "message": "boom", "retryable": True},
        }
    )
    # WHEN it is parsed
    completion = parse_server_message(text)
    # THEN the error keeps code, message and retryable
    assert isinstance(completion, Completion)
    assert completion.error is not None
    assert (completion.error.code, completion.error.retryable) == ("PROCESSING_FAILED", True)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"type": "progress", "request_id": "r"}',
        '{"type": "acknowledgment"}',
        '{"type": "something-newer", "request_id": "r"}',
        '{"type": "status", "request": "nope"}',
    ],
)
def test_unknown_or_malformed_messages_are_skipped_not_fatal(text):
    # GIVEN a message this client cannot use
    # WHEN it is parsed
    # THEN it yields None rather than an exception
    assert parse_server_message(text) is None


def test_encoded_request_follows_the_client_message_shape():
    # GIVEN an action, id, payload and metadata
    # WHEN the request is encoded
    text = encode_request("generate_report", "r-42", {"pages": 5}, {"source": "cli"})
    # THEN it is the JSON object of docs/protocol.md section 2
    assert json.loads(text) == {
        "action": "generate_report",
        "id": "r-42",
        "payload": {"pages": 5},
        "metadata": {"source": "cli"},
    }
    assert json.loads(encode_system("status", "m-1", "r-42")) == {
        "action": "status",
        "id": "m-1",
        "request_id": "r-42",
    }


@pytest.mark.parametrize(
    ("action", "request_id"),
    [("bad action", "r-1"), ("", "r-1"), ("a" * 65, "r-1"), ("echo", "bad id"), ("echo", "")],
)
def test_encoding_refuses_names_the_protocol_forbids(action, request_id):
    # GIVEN an action or id outside the protocol's character rules
    # WHEN it is encoded
    # THEN it is refused before anything is sent
    with pytest.raises(ValueError):
        encode_request(action, request_id, {})


@pytest.mark.parametrize(
    ("payload", "metadata"),
    [({"x": float("nan")}, None), ({}, {"source": 1}), ({"x": float("inf")}, None)],
)
def test_encoding_refuses_values_the_server_would_reject(payload, metadata):
    # GIVEN a NaN or Infinity in the payload, or metadata that is not string to string
    # WHEN it is encoded
    # THEN it is refused before anything is sent
    with pytest.raises(ValueError):
        encode_request("echo", "r-1", payload, metadata)


def test_encoding_refuses_a_message_over_128_kib():
    # GIVEN a payload that makes the message bigger than the gateway accepts
    payload = {"blob": "x" * MAX_MESSAGE_BYTES}
    # WHEN it is encoded
    # THEN it raises PayloadTooLarge with the protocol's code instead of losing the connection
    with pytest.raises(errors.PayloadTooLarge) as caught:
        encode_request("echo", "r-1", payload)
    assert caught.value.code == "PAYLOAD_TOO_LARGE"


def test_generated_request_ids_are_valid_and_distinct():
    # GIVEN / WHEN many generated ids
    ids = {new_request_id() for _ in range(1000)}
    # THEN all fit the protocol and none repeats
    assert len(ids) == 1000
    assert all(is_valid_request_id(i) for i in ids)


@pytest.mark.parametrize(("code", "error_type"), sorted(errors.ERROR_TYPES.items()))
def test_every_protocol_code_maps_to_its_own_error_type(code, error_type):
    # GIVEN a protocol error object
    info = ErrorInfo(code, "m", {"field": "pages"}, True)
    # WHEN it becomes an exception
    error = errors.error_from_info(info, request_id="r", request_status=None)
    # THEN its type and fields carry the code, details and retryable
    assert type(error) is error_type
    assert (error.code, error.details, error.retryable, error.request_id) == (
        code,
        {"field": "pages"},
        True,
        "r",
    )


def test_an_unknown_code_still_raises_a_streamer_error():
    # GIVEN a code newer than this client
    # WHEN it becomes an exception
    error = errors.error_from_info(ErrorInfo("NEW_CODE", "m"), request_id=None, request_status=None)
    # THEN it is the base type with the code kept
    assert type(error) is errors.StreamerError
    assert error.code == "NEW_CODE"


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    initial=st.floats(min_value=0, max_value=10),
    maximum=st.floats(min_value=0, max_value=100),
    seed=st.integers(),
)
def test_backoff_waits_between_zero_and_the_capped_exponential(attempt, initial, maximum, seed):
    # GIVEN a policy and an attempt number
    policy = ReconnectPolicy(initial_delay=initial, max_delay=maximum)
    # WHEN a delay is drawn
    delay = policy.delay(attempt, random.Random(seed))
    # THEN it lies in [0, min(max, initial * 2**attempt)]
    assert 0 <= delay <= policy.ceiling(attempt) <= maximum


def test_backoff_grows_exponentially_and_is_jittered():
    # GIVEN the default policy
    policy = ReconnectPolicy()
    # WHEN ceilings and many draws for one attempt are taken
    ceilings = [policy.ceiling(n) for n in range(8)]
    draws = {policy.delay(3, random.Random(seed)) for seed in range(50)}
    # THEN ceilings double up to the cap, and the draws differ (no lockstep reconnects)
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert len(draws) == 50


def test_the_gateways_own_error_is_an_error_naming_no_message():
    # GIVEN API Gateway's answer when the route's integration failed (no type, its own ids)
    text = '{"message": "Internal server error", "connectionId": "c=", "requestId": "g="}'
    # WHEN it is parsed / THEN it is an error that names none of the client's messages
    assert parse_server_message(text) == Rejection(
        None, ErrorInfo("INTERNAL_ERROR", "Internal server error")
    )
