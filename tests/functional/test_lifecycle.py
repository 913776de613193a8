"""Lifecycle events on the EventBridge bus when requests end (moto's EventBridge and SQS)."""

from __future__ import annotations

import json

import boto3
import pytest

from streamer import config, lifecycle, store
from streamer.entry import processor
from streamer.models import owner_key
from tests.conftest import REGION, FakeContext, load_event
from tests.functional.helpers import Client, Stream

BUS = "streamer-lifecycle"


@pytest.fixture
def bus_queue(test_app, monkeypatch) -> str:
    """A custom bus whose rule sends every `streamer` event to an SQS queue; its URL."""
    events = boto3.client("events", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    events.create_event_bus(Name=BUS)
    queue_url = sqs.create_queue(QueueName="lifecycle")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(
        Name="all-lifecycle", EventBusName=BUS, EventPattern=json.dumps({"source": ["streamer"]})
    )
    events.put_targets(
        Rule="all-lifecycle", EventBusName=BUS, Targets=[{"Id": "queue", "Arn": queue_arn}]
    )
    monkeypatch.setenv(config.EVENT_BUS, BUS)
    return queue_url


def received(queue_url: str) -> list[dict]:
    sqs = boto3.client("sqs", region_name=REGION)
    answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in answer.get("Messages", [])]


def test_completed_failed_and_cancelled_requests_publish_their_events(bus_queue, management):
    alice = Client("conn-alice", user="alice", tenant="t1")
    alice.connect()
    # GIVEN one request that completes, one that fails and one cancelled while queued
    alice.send({"action": "generate_report", "id": "r-ok", "payload": {"pages": 2, "page_ms": 0}})
    alice.send(
        {
            "action": "generate_report",
            "id": "r-bad",
            "payload": {"pages": 2, "page_ms": 0, "fail_at_page": 1},
        }
    )
    stream = Stream()
    stream.run()
    alice.send({"action": "generate_report", "id": "r-stop", "payload": {"pages": 2}})
    alice.send({"action": "cancel", "request_id": "r-stop"})

    # THEN the bus's rule delivered one event per ended request, with the documented shape
    events = {e["detail"]["request_id"]: e for e in received(bus_queue)}
    assert set(events) == {"r-ok", "r-bad", "r-stop"}
    expected_types = {
        "r-ok": "Request Completed",
        "r-bad": "Request Failed",
        "r-stop": "Request Cancelled",
    }
    documented = load_event("eventbridge_lifecycle")
    for request_id, event in events.items():
        assert event["source"] == "streamer"
        assert event["detail-type"] == expected_types[request_id]
        assert set(documented["detail"]) <= set(event["detail"])
        detail = event["detail"]
        assert (detail["tenant_id"], detail["user_id"]) == ("t1", "alice")
        assert detail["action"] == "generate_report" and detail["duration_ms"] >= 0
    assert events["r-bad"]["detail"]["status"] == "FAILED"
    assert events["r-bad"]["detail"]["error_code"] == "PROCESSING_FAILED"


def test_a_bus_that_refuses_events_does_not_change_the_outcome(test_app, management, monkeypatch):
    # GIVEN a configured bus that does not exist
    monkeypatch.setenv(config.EVENT_BUS, "no-such-bus")
    alice = Client("conn-alice", user="alice", tenant="t1")
    alice.connect()
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 1, "page_ms": 0}})

    # WHEN the request runs THEN it still completes and its complete goes out
    Stream().run()
    assert store.get_request(owner_key("t1", "alice"), "r-1").status == "COMPLETED"
    assert [m["type"] for m in management.messages("conn-alice")][-1] == "complete"


def test_a_failing_client_is_logged_not_raised(test_app, caplog):
    item = type(
        "Item",
        (),
        {
            "tenant_id": "t1",
            "user_id": "alice",
            "action": "a",
            "request_id": "r-1",
            "status": "COMPLETED",
            "created_at": 0,
            "error": None,
        },
    )()

    def broken():
        raise ConnectionError("network down")

    publisher = lifecycle.LifecyclePublisher(BUS, REGION, client_factory=broken)
    assert publisher.request_ended(item, now=10) is False
    assert "lifecycle event not published" in caplog.text


def test_without_a_bus_nothing_is_published(test_app, monkeypatch):
    monkeypatch.delenv(config.EVENT_BUS, raising=False)
    assert lifecycle.publisher() is None


def test_an_event_lost_with_its_worker_is_published_when_the_batch_comes_again(
    bus_queue, management
):
    # GIVEN a worker that sent its complete and died before it published its event
    alice = Client("conn-alice", user="alice", tenant="t1")
    alice.connect()
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 1, "page_ms": 0}})
    batch = Stream().next_event()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lifecycle, "request_ended", worker_dies)
        with pytest.raises(WorkerDied):
            processor.handler(batch, FakeContext())
    item = store.get_request(owner_key("t1", "alice"), "r-1")
    assert item.status == "COMPLETED" and received(bus_queue) == []

    # WHEN Lambda delivers the failed batch again
    processor.handler(batch, FakeContext())

    # THEN the event is published (with the request's own duration), and the complete
    # repeated with its seq, which the client drops
    [event] = received(bus_queue)
    assert event["detail-type"] == "Request Completed"
    assert event["detail"]["duration_ms"] == int(item.updated_at) - int(item.created_at)
    completes = [m for m in management.messages("conn-alice") if m["type"] == "complete"]
    assert [m["seq"] for m in completes] == [int(item.seq)] * 2


class WorkerDied(BaseException):
    """The Lambda stops here: nothing after this line of the worker runs."""


def worker_dies(*args, **kwargs):
    raise WorkerDied
