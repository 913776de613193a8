"""The router: answers as route responses, sync vs async, idempotency, isolation."""

from __future__ import annotations

import pytest

from tests.functional import helpers
from tests.functional.helpers import Client


@pytest.fixture
def bob(test_app, management) -> Client:
    client = Client("conn-bob", user="bob", tenant="t2")
    client.connect()
    return client


def test_a_sync_action_answers_with_a_response_and_stores_nothing(alice, management):
    # WHEN alice echoes without an id
    answer = alice.send({"action": "echo", "payload": {"hello": "world"}})

    # THEN the response is the route response, nothing was posted or stored
    assert answer["type"] == "response" and answer["success"] is True
    assert answer["data"] == {"echo": {"hello": "world"}}
    assert management.posts == [] and helpers.requests() == []


def test_a_sync_handler_runs_inline_unless_it_opts_out(alice):
    # A sync handler runs on the invocation's thread (the router's test calls it on the
    # main thread, as Lambda's runtime does); one registered with inline=False does not
    answer = alice.send({"action": "off_main_thread", "id": "t-1", "payload": {}})
    assert answer["data"]["main_thread"] is False

    # and past its deadline its caller gets TIMEOUT while the handler is not interrupted
    late = alice.send(
        {"action": "off_main_thread", "id": "t-2", "payload": {"seconds": 1.5}},
        remaining_ms=1100,
    )
    assert late["success"] is False and late["error"]["code"] == "TIMEOUT"
    assert late["request_id"] == "t-2"


def test_a_class_based_handler_runs_and_validates(alice):
    assert alice.send({"action": "count", "payload": {"to": 3}})["data"] == [0, 1, 2]
    refused = alice.send({"action": "count", "id": "c-1", "payload": {"to": "x"}})
    assert refused["type"] == "error" and refused["request_id"] == "c-1"
    assert refused["error"]["details"] == {"fields": {"to": "must be an integer"}}


def test_an_async_action_is_stored_pending_and_acknowledged(alice, management):
    answer = alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 2}})

    assert answer == {
        "type": "acknowledgment",
        "request_id": "r-1",
        "status": "QUEUED",
        "estimated_duration_ms": 30000,
    }
    [item] = helpers.requests()
    assert item["status"] == {"S": "PENDING"}
    assert item["origin_region"] == {"S": "us-east-1"}
    assert item["owner"] == {"S": "t1#alice"}
    assert management.posts == []  # acknowledgments are route responses


@pytest.mark.parametrize(
    "payload, fields",
    [
        ({}, {"pages"}),
        ({"pages": "5"}, {"pages"}),
        ({"pages": 0}, {"pages"}),
        ({"pages": 1001}, {"pages"}),
        ({"pages": True}, {"pages"}),
        ({"pages": 5, "page_ms": -1}, {"page_ms"}),
        ({"pages": 5, "page_ms": 10001, "fail_at_page": "x"}, {"page_ms", "fail_at_page"}),
    ],
)
def test_invalid_report_payloads_are_refused_before_anything_is_stored(alice, payload, fields):
    answer = alice.send({"action": "generate_report", "id": "r-bad", "payload": payload})

    assert answer["type"] == "error" and answer["request_id"] == "r-bad"
    assert answer["error"]["code"] == "VALIDATION_ERROR"
    assert set(answer["error"]["details"]["fields"]) == fields
    assert helpers.requests() == []


def test_unknown_actions_and_bad_frames_get_codes(alice):
    assert alice.send({"action": "nope", "id": "x-1"})["error"]["code"] == "INVALID_ACTION"
    assert alice.send_raw("{not json")["error"]["code"] == "INVALID_MESSAGE"
    assert alice.send_raw('{"action": "echo", "payload": 3}')["error"]["code"] == "INVALID_MESSAGE"
    big = '{"action": "echo", "payload": {"x": "' + "y" * (130 * 1024) + '"}}'
    assert alice.send_raw(big)["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_errors_never_leak_internals(alice):
    answer = alice.send({"action": "nope"})
    text = str(answer)
    assert "Traceback" not in text and "arn:aws" not in text and "test-requests" not in text


def test_a_repeated_id_is_idempotent(alice, management):
    first = alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 2}})
    second = alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 2}})

    assert first == second
    assert len(helpers.requests()) == 1


def test_a_repeated_id_with_another_payload_is_a_conflict(alice):
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 2}})
    answer = alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 3}})

    assert answer["error"]["code"] == "CONFLICT" and answer["request_id"] == "r-1"
    [item] = helpers.requests()
    assert item["payload"]["S"] == '{"pages": 2, "page_ms": 100, "fail_at_page": null}'


def test_a_repeated_sync_request_replays_the_stored_response(alice):
    first = alice.send({"action": "echo", "id": "e-1", "payload": {"n": 1}})
    again = alice.send({"action": "echo", "id": "e-1", "payload": {"n": 1}})
    other = alice.send({"action": "echo", "id": "e-1", "payload": {"n": 2}})

    assert (
        first
        == again
        == {"type": "response", "request_id": "e-1", "success": True, "data": {"echo": {"n": 1}}}
    )
    assert other["error"]["code"] == "CONFLICT"


def test_a_sync_handler_past_its_deadline_times_out(alice):
    answer = alice.send({"action": "slow_sync", "payload": {"seconds": 3}}, remaining_ms=1500)

    assert answer["success"] is False and answer["error"]["code"] == "TIMEOUT"


def test_ping_answers_pong(alice):
    assert alice.send({"action": "ping"})["type"] == "pong"


def test_status_subscribe_unsubscribe_of_own_request(alice):
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 2}})
    watcher = Client("conn-watch", user="alice", tenant="t1")
    watcher.connect()

    status = watcher.send({"action": "status", "request_id": "r-1"})
    snapshot = watcher.send({"action": "subscribe", "request_id": "r-1"})
    gone = watcher.send({"action": "unsubscribe", "request_id": "r-1"})

    assert status["type"] == "status" and status["request"]["status"] == "PENDING"
    assert status["request"]["action"] == "generate_report"
    assert snapshot["type"] == "progress" and snapshot["request_id"] == "r-1"
    assert gone == {"type": "unsubscribed", "request_id": "r-1"}
    assert helpers.subscriptions() == []


@pytest.mark.parametrize("action", ["status", "subscribe", "unsubscribe", "cancel"])
def test_another_tenants_request_is_answered_like_an_unknown_one(alice, bob, action):
    # GIVEN a request of alice (tenant t1)
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 2}})

    # WHEN bob (tenant t2) names it, and names an id nobody has
    theirs = bob.send({"action": action, "request_id": "r-1"})
    unknown = bob.send({"action": action, "request_id": "r-unknown"})

    # THEN both answers are NOT_FOUND and differ only in the id; alice's request is untouched
    assert theirs["error"]["code"] == unknown["error"]["code"] == "NOT_FOUND"
    assert theirs["error"]["message"] == unknown["error"]["message"]
    [item] = helpers.requests()
    assert item["status"] == {"S": "PENDING"}
    assert helpers.subscriptions() == []


def test_the_same_client_id_in_another_tenant_is_a_separate_request(alice, bob):
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 2}})
    answer = bob.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 9}})

    assert answer["type"] == "acknowledgment"
    assert sorted(i["owner"]["S"] for i in helpers.requests()) == ["t1#alice", "t2#bob"]


def test_identity_comes_only_from_the_authorizer(alice):
    alice.send(
        {
            "action": "generate_report",
            "id": "r-1",
            "payload": {"pages": 2},
            "metadata": {"tenant_id": "t2", "user_id": "bob"},
        }
    )
    [item] = helpers.requests()
    assert (item["tenant_id"]["S"], item["user_id"]["S"]) == ("t1", "alice")


def test_a_message_without_authorizer_identity_is_unauthorized(test_app, management):
    stranger = Client("conn-x")
    stranger.authorizer = {}
    assert stranger.send({"action": "echo"})["error"]["code"] == "UNAUTHORIZED"


def test_cancel_of_a_pending_request_ends_it_and_tells_the_owner(alice, management):
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 2}})

    answer = alice.send({"action": "cancel", "request_id": "r-1"})

    assert answer["type"] == "status" and answer["request"]["status"] == "CANCELLED"
    [complete] = management.messages("conn-alice")
    assert complete["type"] == "complete" and complete["status"] == "CANCELLED"
    assert complete["error"]["code"] == "CANCELLED" and complete["seq"] == 1
    # Cancelling again changes nothing and sends nothing more.
    assert alice.send({"action": "cancel", "request_id": "r-1"})["request"]["status"] == "CANCELLED"
    assert len(management.posts) == 1
