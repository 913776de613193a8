"""Topics and the publish function, fed the events SNS and EventBridge send."""

from __future__ import annotations

import json

import pytest

from streamer.entry import publish
from streamer.publish import PublishFailed
from tests.conftest import FakeContext, load_event
from tests.functional.helpers import Client, subscriptions


def notifications(management, connection_id: str) -> list[dict]:
    return [m for m in management.messages(connection_id) if m["type"] == "notification"]


def sns_event(message: dict) -> dict:
    event = load_event("sns_notification")
    event["Records"][0]["Sns"]["Message"] = json.dumps(message)
    return event


def test_an_sns_result_reaches_every_tab_subscribed_to_the_job(test_app, management):
    # GIVEN two tabs of alice subscribed to the job id the client made
    tabs = [Client(f"conn-tab-{i}", user="alice", tenant="t1") for i in (1, 2)]
    for tab in tabs:
        tab.connect()
        assert tab.send({"action": "subscribe", "topic": "job-123"}) == {
            "type": "subscribed",
            "topic": "job-123",
        }

    # WHEN the pipeline's result arrives through SNS
    answer = publish.handler(load_event("sns_notification"), FakeContext())

    # THEN both tabs get one notification with the documented shape
    assert answer["delivered"] == 2
    for tab in tabs:
        (message,) = notifications(management, tab.connection_id)
        assert set(message) == {"type", "topic", "event", "data", "timestamp"}
        assert message["topic"] == "job-123" and message["event"] == "processing.complete"
        assert message["data"]["validatedBooks"] == 3


def test_a_late_subscriber_is_answered_with_the_retained_notification(test_app, management):
    # GIVEN a result published before anyone subscribed
    publish.handler(load_event("sns_notification"), FakeContext())
    late = Client("conn-late", user="alice", tenant="t1")
    late.connect()

    # WHEN a connection subscribes afterwards
    answer = late.send({"action": "subscribe", "topic": "job-123"})

    # THEN the answer is that notification, and the subscription is in place
    assert answer["type"] == "notification" and answer["event"] == "processing.complete"
    keys = {(s["request_key"]["S"], s["connection_id"]["S"]) for s in subscriptions()}
    assert ("topic!t1!job-123", "conn-late") in keys


def test_topics_are_scoped_to_the_tenant(test_app, management):
    # GIVEN a subscriber of another tenant to the same topic name
    other = Client("conn-other", user="alice", tenant="t2")
    other.connect()
    other.send({"action": "subscribe", "topic": "job-123"})

    # WHEN tenant t1 publishes on job-123
    answer = publish.handler(load_event("sns_notification"), FakeContext())

    # THEN nothing reaches it, and it does not see t1's retained message either
    assert answer["delivered"] == 0 and notifications(management, "conn-other") == []
    assert other.send({"action": "subscribe", "topic": "job-123"})["type"] == "subscribed"


def test_unsubscribe_and_disconnect_stop_notifications(test_app, management):
    stays, leaves, drops = (Client(f"conn-{n}", user="alice", tenant="t1") for n in "abc")
    for client in (stays, leaves, drops):
        client.connect()
        client.send({"action": "subscribe", "topic": "job-123"})
    assert leaves.send({"action": "unsubscribe", "topic": "job-123"}) == {
        "type": "unsubscribed",
        "topic": "job-123",
    }
    drops.disconnect()

    publish.handler(load_event("sns_notification"), FakeContext())

    assert len(notifications(management, "conn-a")) == 1
    assert notifications(management, "conn-b") == notifications(management, "conn-c") == []


def test_one_connection_follows_many_topics(test_app, management):
    tab = Client("conn-tab", user="alice", tenant="t1")
    tab.connect()
    for topic in ("job-1", "job-2"):
        tab.send({"action": "subscribe", "topic": topic})
    for topic in ("job-1", "job-2", "job-3"):
        publish.handler(sns_event({"tenant_id": "t1", "topic": topic, "event": "done"}), None)
    assert [m["topic"] for m in notifications(management, "conn-tab")] == ["job-1", "job-2"]


def test_an_eventbridge_notification_reaches_all_of_one_users_connections(test_app, management):
    # GIVEN alice on two connections, bob on one, and an alice of another tenant
    clients = {
        "conn-alice-1": Client("conn-alice-1", user="alice", tenant="t1"),
        "conn-alice-2": Client("conn-alice-2", user="alice", tenant="t1"),
        "conn-bob": Client("conn-bob", user="bob", tenant="t1"),
        "conn-alice-t2": Client("conn-alice-t2", user="alice", tenant="t2"),
    }
    for client in clients.values():
        client.connect()

    # WHEN a Real-time Notification for alice of t1 arrives from the bus
    answer = publish.handler(load_event("eventbridge_notification"), FakeContext())

    # THEN exactly alice's two connections get it, without a topic
    assert answer["delivered"] == 2
    for connection_id in ("conn-alice-1", "conn-alice-2"):
        (message,) = notifications(management, connection_id)
        assert message["event"] == "content_generated" and "topic" not in message
    assert notifications(management, "conn-bob") == notifications(management, "conn-alice-t2") == []


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"topic": "job-1", "event": "done"}, "tenant_id"),
        ({"tenant_id": "t1", "event": "done"}, "exactly one of"),
        ({"tenant_id": "t1", "topic": "job-1", "user_id": "alice", "event": "x"}, "exactly one"),
        ({"tenant_id": "t1", "topic": "job 1", "event": "done"}, "topic"),
        ({"tenant_id": "t1", "topic": "job-1"}, "event"),
        ({"tenant_id": "t1", "topic": "job-1", "event": "x", "data": "y" * 140_000}, "bytes"),
    ],
)
def test_a_malformed_message_fails_the_invocation_with_its_reason(
    test_app, management, message, reason
):
    # GIVEN a subscriber, and a message it must not receive
    tab = Client("conn-tab", user="alice", tenant="t1")
    tab.connect()
    tab.send({"action": "subscribe", "topic": "job-1"})

    # WHEN it arrives THEN the invocation fails (Lambda retries, then the DLQ) with the reason
    with pytest.raises(PublishFailed, match=reason):
        publish.handler(sns_event(message), FakeContext())
    assert notifications(management, "conn-tab") == []


def test_sns_text_that_is_not_json_and_foreign_events_are_rejected(test_app, management):
    with pytest.raises(PublishFailed, match="not valid JSON"):
        event = load_event("sns_notification")
        event["Records"][0]["Sns"]["Message"] = "Hello from SNS!"
        publish.handler(event, FakeContext())
    other = load_event("eventbridge_notification") | {"detail-type": "Content Generated"}
    with pytest.raises(PublishFailed, match="detail-type"):
        publish.handler(other, FakeContext())
    with pytest.raises(PublishFailed, match="neither"):
        publish.handler({"hello": "world"}, FakeContext())


def test_the_documented_malformed_sample_is_rejected_for_its_missing_tenant(test_app, management):
    with pytest.raises(PublishFailed, match="tenant_id"):
        publish.handler(load_event("sns_malformed"), FakeContext())


def test_a_watch_token_connection_cannot_subscribe_to_topics(test_app, management):
    watcher = Client("conn-watch", user="alice", tenant="t1")
    watcher.authorizer["watch_request"] = "r-1"
    watcher.connect()
    answer = watcher.send({"action": "subscribe", "topic": "job-1"})
    assert answer["type"] == "error" and answer["error"]["code"] == "FORBIDDEN"


def test_an_invalid_topic_is_refused(test_app, management):
    tab = Client("conn-tab", user="alice", tenant="t1")
    tab.connect()
    answer = tab.send({"action": "subscribe", "topic": "a!b"})
    assert answer["error"]["code"] == "INVALID_MESSAGE"
    assert answer["error"]["details"] == {"field": "topic"}
