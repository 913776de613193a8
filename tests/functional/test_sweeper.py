"""Leases: a request whose worker died is re-driven, and fails after max attempts."""

from __future__ import annotations

import boto3

from streamer import config, runtime, store
from streamer.models import PROCESSING, owner_key
from streamer.sweeper import sweep
from tests.conftest import REGION, TABLES
from tests.functional import helpers
from tests.functional.helpers import Client, Stream


def claim_and_die(request_id: str, now: int) -> None:
    """A worker claims the request with a short lease and never finishes."""
    item = store.get_request(owner_key("t1", "alice"), request_id)
    assert store.claim_request(item, now, now + 10)


def test_an_expired_lease_is_redriven_and_then_timed_out(test_app, management, monkeypatch):
    monkeypatch.setenv(config.MAX_ATTEMPTS, "2")
    runtime.reset()
    management_api = management
    alice = Client("conn-alice", user="alice", tenant="t1")
    alice.connect()
    runtime.current().__dict__["delivery"] = management_delivery(management_api)
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 1}})

    # GIVEN the first attempt's worker died
    claim_and_die("r-1", now=1_000)
    # WHEN the sweeper runs after the lease
    first = sweep("us-east-1", runtime.current().delivery, now=2_000)
    # THEN the request is PENDING again, attempt 1 kept (the next claim makes it 2)
    item = store.get_request(owner_key("t1", "alice"), "r-1")
    assert first.redriven == ["r-1"] and item.status == "PENDING" and item.attempt == 1

    # GIVEN the second attempt dies too
    claim_and_die("r-1", now=3_000)
    second = sweep("us-east-1", runtime.current().delivery, now=4_000)

    # THEN it ends FAILED with TIMEOUT, and the owner gets exactly one complete
    item = store.get_request(owner_key("t1", "alice"), "r-1")
    assert second.timed_out == ["r-1"] and item.status == "FAILED"
    assert item.error["code"] == "TIMEOUT"
    completes = [m for m in management_api.messages("conn-alice") if m["type"] == "complete"]
    assert len(completes) == 1 and completes[0]["error"]["code"] == "TIMEOUT"


def test_a_redriven_request_is_picked_up_by_the_stream_and_resumes_from_its_checkpoint(
    test_app, management
):
    alice = Client("conn-alice", user="alice", tenant="t1")
    alice.connect()
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 4, "page_ms": 0}})
    stream = Stream()
    stream.next_event()  # the INSERT, taken by a worker that then died:
    item = store.get_request(owner_key("t1", "alice"), "r-1")
    store.claim_request(item, 1_000, 1_010)
    store.save_progress(
        item,
        1,
        percentage=50,
        message="page 2 of 4",
        seq=2,
        checkpoint={"pages_done": 2},
        now_ms=1_005,
    )

    sweep("us-east-1", runtime.current().delivery, now=2_000)
    stream.run()

    item = store.get_request(owner_key("t1", "alice"), "r-1")
    assert item.status == "COMPLETED" and item.attempt == 2
    pages = [m["message"] for m in management.messages("conn-alice") if m["type"] == "progress"]
    assert pages == ["page 3 of 4", "page 4 of 4"]


def test_running_requests_within_their_lease_are_left_alone(test_app, management):
    alice = Client("conn-alice", user="alice", tenant="t1")
    alice.connect()
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 1}})
    claim_and_die("r-1", now=1_000)

    report = sweep("us-east-1", runtime.current().delivery, now=1_005)

    assert report.redriven == [] and report.timed_out == []
    [item] = helpers.requests()
    assert item["status"] == {"S": PROCESSING}


def management_delivery(api):
    from streamer.delivery import Delivery

    return Delivery("us-east-1", on_gone=store.forget_connection, client_factory=api.factory)


def test_a_request_cancelled_while_its_worker_died_ends_cancelled(test_app, management):
    alice = Client("conn-alice", user="alice", tenant="t1")
    alice.connect()
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 1}})
    claim_and_die("r-1", now=1_000)
    alice.send({"action": "cancel", "request_id": "r-1"})

    report = sweep("us-east-1", runtime.current().delivery, now=2_000)

    item = store.get_request(owner_key("t1", "alice"), "r-1")
    assert report.cancelled == ["r-1"] and report.redriven == []
    assert item.status == "CANCELLED"
    completes = [m for m in management.messages("conn-alice") if m["type"] == "complete"]
    assert [c["status"] for c in completes] == ["CANCELLED"]


def queue_two_and_let_their_workers_die(alice: Client) -> None:
    for request_id in ("r-1", "r-2"):
        alice.send({"action": "generate_report", "id": request_id, "payload": {"pages": 1}})
        claim_and_die(request_id, now=1_000)


def test_a_request_that_cannot_be_read_does_not_stop_the_sweep(test_app, management, caplog):
    # GIVEN a due request whose stored payload is not JSON, and a due request next to it
    alice = Client("conn-alice", user="alice", tenant="t1")
    alice.connect()
    queue_two_and_let_their_workers_die(alice)
    bad_key = f"{owner_key('t1', 'alice')}#r-1"
    boto3.client("dynamodb", region_name=REGION).update_item(
        TableName=TABLES[config.REQUESTS_TABLE],
        Key={"request_key": {"S": bad_key}},
        UpdateExpression="SET payload = :broken",
        ExpressionAttributeValues={":broken": {"S": "{not json"}},
    )

    # WHEN the sweeper runs after their leases
    report = sweep("us-east-1", runtime.current().delivery, now=2_000)

    # THEN the other request is re-driven, and the bad one is counted and logged with its key
    assert report.redriven == ["r-2"]
    assert report.failed == [bad_key] and report.to_dict()["failed"] == 1
    logged = [getattr(r, "fields", {}).get("request_key") for r in caplog.records]
    assert bad_key in logged


def test_a_request_whose_update_fails_does_not_stop_the_sweep(test_app, management, monkeypatch):
    # GIVEN two due requests, and DynamoDB failing the re-drive of the first
    alice = Client("conn-alice", user="alice", tenant="t1")
    alice.connect()
    queue_two_and_let_their_workers_die(alice)
    real_redrive = store.redrive_request

    def redrive(item, **kwargs):
        if item.request_id == "r-1":
            raise store.StoreUnavailable("ProvisionedThroughputExceededException")
        return real_redrive(item, **kwargs)

    monkeypatch.setattr(store, "redrive_request", redrive)

    # WHEN the sweeper runs after their leases
    report = sweep("us-east-1", runtime.current().delivery, now=2_000)

    # THEN the second one is re-driven all the same, and the first one counted
    assert report.redriven == ["r-2"]
    assert report.failed == [f"{owner_key('t1', 'alice')}#r-1"]
    assert store.get_request(owner_key("t1", "alice"), "r-2").status == "PENDING"


def test_a_run_longer_than_its_pickup_time_is_postponed_to_its_lease_and_redriven_after(
    test_app, management
):
    # GIVEN a request claimed with a lease that ends after its pickup time
    alice = Client("conn-alice", user="alice", tenant="t1")
    alice.connect()
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 1}})
    item = store.get_request(owner_key("t1", "alice"), "r-1")
    pickup = int(item.due_at)
    lease_end = pickup + 600_000
    assert store.claim_request(item, pickup - 1_000, lease_end)

    # THEN the claim left the request due at its pickup time (no write to the due index)
    assert int(store.get_request(owner_key("t1", "alice"), "r-1").due_at) == pickup

    # WHEN the sweeper runs at the pickup time, its worker still within the lease
    during = sweep("us-east-1", runtime.current().delivery, now=pickup)
    # THEN it is left running, due again at the lease's end
    stored = store.get_request(owner_key("t1", "alice"), "r-1")
    assert during.postponed == ["r-1"] and during.redriven == []
    assert stored.status == PROCESSING and int(stored.due_at) == lease_end

    # WHEN the sweeper runs after the lease, the worker having died
    after = sweep("us-east-1", runtime.current().delivery, now=lease_end)
    # THEN the request is re-driven
    assert after.redriven == ["r-1"]
    assert store.get_request(owner_key("t1", "alice"), "r-1").status == "PENDING"
