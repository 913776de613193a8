"""The stream processor, fed the records moto's stream holds, shaped as Lambda sends them."""

from __future__ import annotations

import copy
import json

from streamer import store
from streamer.entry import processor
from tests.conftest import FakeContext
from tests.functional import apps, helpers
from tests.functional.helpers import Client, Stream


def request_item(request_id: str) -> dict:
    return next(i for i in helpers.requests() if i["request_id"]["S"] == request_id)


def test_a_record_delivered_three_times_runs_the_handler_once(alice, management):
    alice.send({"action": "explode", "id": "x-1"})
    event = Stream().next_event()

    results = [processor.handler(copy.deepcopy(event), FakeContext()) for _ in range(3)]

    # THEN the handler ran once; a record that comes after the end repeats the stored
    # complete (its worker may have died before sending it), with the same seq, which
    # the client drops
    assert results == [{"batchItemFailures": []}] * 3
    assert apps.runs == ["x-1"]
    completes = management.messages()
    assert {m["type"] for m in completes} == {"complete"}
    assert len({(m["seq"], m["status"]) for m in completes}) == 1


def test_a_handler_exception_ends_failed_with_a_clean_error(alice, management):
    alice.send({"action": "explode", "id": "x-1"})
    Stream().run()

    [complete] = management.messages("conn-alice")
    assert complete["status"] == "FAILED"
    error = complete["error"]
    assert error["code"] == "PROCESSING_FAILED" and error["retryable"] is False
    assert "correlation_id" in error["details"]
    assert "secret" not in json.dumps(error) and "arn:aws" not in json.dumps(error)
    assert request_item("x-1")["status"] == {"S": "FAILED"}


def test_a_demo_report_failing_at_a_page_ends_failed_with_its_message(alice, management):
    alice.send(
        {
            "action": "generate_report",
            "id": "r-1",
            "payload": {"pages": 4, "page_ms": 0, "fail_at_page": 3},
        }
    )
    Stream().run()

    complete = management.messages("conn-alice")[-1]
    assert complete["status"] == "FAILED"
    assert complete["error"]["code"] == "PROCESSING_FAILED"
    assert complete["error"]["message"] == "page 3 could not be rendered"


def test_a_gone_owner_is_forgotten_and_the_request_still_completes(alice, management):
    # GIVEN alice queued a report and a second connection subscribed to it
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 3, "page_ms": 0}})
    watcher = Client("conn-watch", user="alice", tenant="t1")
    watcher.connect()
    watcher.send({"action": "subscribe", "request_id": "r-1"})
    # WHEN alice's connection is gone (410) by the time the processor posts
    management.gone.add("conn-alice")
    Stream().run()

    # THEN her record and subscriptions are deleted, the request completed, the watcher was told
    assert [c["connection_id"]["S"] for c in helpers.connections()] == ["conn-watch"]
    assert request_item("r-1")["status"] == {"S": "COMPLETED"}
    assert management.messages("conn-watch")[-1]["type"] == "complete"


def test_a_result_over_100_kib_fails_with_payload_too_large(alice, management):
    alice.send({"action": "big_result", "id": "b-1"})
    Stream().run()

    complete = management.messages("conn-alice")[-1]
    assert complete["status"] == "FAILED" and complete["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "reference" in complete["error"]["message"]


def test_records_of_other_regions_and_other_statuses_are_ignored(alice, management):
    alice.send({"action": "explode", "id": "x-1"})
    event = Stream().next_event()
    foreign = copy.deepcopy(event)
    foreign["Records"][0]["dynamodb"]["NewImage"]["origin_region"] = {"S": "eu-west-1"}
    removed = copy.deepcopy(event)
    removed["Records"][0]["eventName"] = "REMOVE"

    processor.handler(foreign, FakeContext())
    processor.handler(removed, FakeContext())

    assert apps.runs == [] and management.posts == []


def test_throttling_on_the_claim_is_a_batch_item_failure_then_runs(alice, management, monkeypatch):
    # GIVEN two queued requests and DynamoDB throttling the first claim
    alice.send({"action": "explode", "id": "x-1"})
    alice.send({"action": "explode", "id": "x-2"})
    event = Stream().next_event()
    real_claim = store.claim_request
    throttled = {"x-1"}

    def claim(item, *args, **kwargs):
        if item.request_id in throttled:
            throttled.discard(item.request_id)
            raise store.StoreUnavailable("ProvisionedThroughputExceededException")
        return real_claim(item, *args, **kwargs)

    monkeypatch.setattr(store, "claim_request", claim)

    # WHEN the batch runs, then the mapping retries the failed record
    first = processor.handler(copy.deepcopy(event), FakeContext())
    failed = first["batchItemFailures"]
    retry = {
        "Records": [
            r
            for r in event["Records"]
            if r["dynamodb"]["SequenceNumber"] == failed[0]["itemIdentifier"]
        ]
    }
    second = processor.handler(retry, FakeContext())

    # THEN only the throttled record was reported, and it ran on the retry; nothing ran twice
    first_sequence_number = event["Records"][0]["dynamodb"]["SequenceNumber"]
    assert [f["itemIdentifier"] for f in failed] == [first_sequence_number]
    assert second == {"batchItemFailures": []}
    assert sorted(apps.runs) == ["x-1", "x-2"]


def test_a_retryable_failure_retries_then_completes(alice, management, monkeypatch):
    from streamer import transitions
    from streamer.entry import sweeper

    monkeypatch.setattr(transitions, "retry_delay_ms", lambda attempt: 0)
    alice.send({"action": "flaky", "id": "f-1", "payload": {"succeed_on": 3}})
    stream = Stream()

    for _ in range(3):
        stream.run()
        sweeper.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, FakeContext())

    item = request_item("f-1")
    assert item["status"] == {"S": "COMPLETED"} and item["attempt"] == {"N": "3"}
    messages = management.messages("conn-alice")
    assert [m["type"] for m in messages] == ["progress", "progress", "complete"]
    assert "retrying" in messages[0]["message"]
    assert [m["seq"] for m in messages] == [1, 2, 3]
    assert messages[-1]["result"] == {"attempt": 3}


def test_a_retryable_failure_past_max_attempts_ends_failed(alice, management, monkeypatch):
    from streamer import transitions
    from streamer.entry import sweeper

    monkeypatch.setattr(transitions, "retry_delay_ms", lambda attempt: 0)
    alice.send({"action": "flaky", "id": "f-1", "payload": {"succeed_on": 99}})
    stream = Stream()
    for _ in range(4):
        stream.run()
        sweeper.handler({}, FakeContext())

    assert apps.runs == ["f-1"] * 3
    complete = management.messages("conn-alice")[-1]
    assert complete["status"] == "FAILED" and complete["error"]["retryable"] is True


def test_cancel_while_running_ends_cancelled(alice, management):
    import threading

    alice.send({"action": "wait_for_cancel", "id": "w-1"})
    event = Stream().next_event()
    worker = threading.Thread(target=processor.handler, args=(event, FakeContext()))
    worker.start()
    helpers_wait_for(lambda: request_item("w-1")["status"] == {"S": "PROCESSING"})

    alice.send({"action": "cancel", "request_id": "w-1"})
    worker.join(timeout=5)

    assert not worker.is_alive()
    assert request_item("w-1")["status"] == {"S": "CANCELLED"}
    complete = management.messages("conn-alice")[-1]
    assert complete["type"] == "complete" and complete["status"] == "CANCELLED"


def helpers_wait_for(condition, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)
