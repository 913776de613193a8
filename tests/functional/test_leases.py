"""Leases and what a client sees after a worker dies: found by the fault-injection suite."""

from __future__ import annotations

import time

import pytest

from streamer import config, runtime, store
from streamer.audience import Audience
from streamer.entry import processor
from streamer.models import owner_key
from streamer.progress import MAX_UNPERSISTED_MESSAGES, ProgressReporter
from streamer.sweeper import sweep
from tests.conftest import FakeContext
from tests.functional.helpers import Stream
from tests.functional.test_sweeper import management_delivery


def test_a_lease_ends_with_the_invocation_plus_the_margin(alice, monkeypatch):
    # GIVEN a queued request, and a processor invocation with 4 s left to run
    alice.send({"action": "explode", "id": "x-1"})
    leases = []
    real_claim = store.claim_request

    def claim(item, now_ms, lease_expires_at, **kwargs):
        leases.append(lease_expires_at - now_ms)
        return real_claim(item, now_ms, lease_expires_at, **kwargs)

    monkeypatch.setattr(store, "claim_request", claim)

    # WHEN the invocation claims the request (in one of the batch's worker threads)
    processor.handler(Stream().next_event(), FakeContext(remaining_ms=4_000))

    # THEN the lease lasts the 4 s plus the 30 s margin, not Lambda's 15-minute maximum
    assert len(leases) == 1
    assert 33_000 <= leases[0] <= 34_000


def test_progress_never_runs_more_than_the_bound_ahead_of_the_persisted_seq():
    # GIVEN a worker that cannot persist anything
    published: list[int] = []

    def unavailable(snapshot) -> bool:
        raise store.StoreUnavailable("ProvisionedThroughputExceededException")

    progress = ProgressReporter(
        "r-1",
        publish=lambda message: published.append(message["seq"]),
        persist=unavailable,
        is_cancelled=lambda: False,
        flush_interval_s=0,
        start_seq=7,
    )
    # WHEN it reports far more often than the bound
    for i in range(3 * MAX_UNPERSISTED_MESSAGES):
        progress.report(i / 3)
        time.sleep(0.001)
    last_seq = progress.close()

    # THEN it sent up to the bound past the persisted seq, and no further
    assert published == list(range(8, 8 + MAX_UNPERSISTED_MESSAGES))
    assert last_seq == 7 + MAX_UNPERSISTED_MESSAGES


def dead_worker(request_id: str, *, persisted_seq: int) -> None:
    """A worker claims the request, persists progress up to `persisted_seq`, and dies."""
    item = store.get_request(owner_key("t1", "alice"), request_id)
    assert store.claim_request(item, 1_000, 1_010)
    assert store.save_progress(
        item,
        int(item.attempt),
        percentage=20,
        message="page 1 of 5",
        seq=persisted_seq,
        checkpoint={"pages_done": 1},
        now_ms=1_005,
    )


def test_after_a_worker_died_the_next_attempt_continues_past_what_it_may_have_sent(
    alice, management
):
    # GIVEN a worker that persisted seq 3 and may have sent more before it died
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 5, "page_ms": 0}})
    stream = Stream()
    stream.next_event()
    dead_worker("r-1", persisted_seq=3)

    # WHEN the sweeper re-drives it and the next attempt runs
    sweep("us-east-1", runtime.current().delivery, now=2_000)
    stream.run()

    # THEN every message of the new attempt comes after anything the dead one sent
    seqs = [m["seq"] for m in management.messages("conn-alice")]
    assert seqs and min(seqs) == 3 + MAX_UNPERSISTED_MESSAGES + 1
    assert seqs == sorted(set(seqs))


@pytest.mark.parametrize("cancelled", [False, True], ids=["timed out", "cancelled"])
def test_the_sweepers_complete_comes_after_what_a_dead_worker_may_have_sent(
    alice, management, monkeypatch, cancelled
):
    # GIVEN a request on its last attempt, whose worker persisted seq 3 and died
    monkeypatch.setenv(config.MAX_ATTEMPTS, "1")
    runtime.reset()
    runtime.current().__dict__["delivery"] = management_delivery(management)
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 5}})
    dead_worker("r-1", persisted_seq=3)
    if cancelled:
        alice.send({"action": "cancel", "request_id": "r-1"})

    # WHEN the sweeper ends it
    sweep("us-east-1", runtime.current().delivery, now=2_000)

    # THEN its complete has a seq no message of the dead worker can have had
    [complete] = [m for m in management.messages("conn-alice") if m["type"] == "complete"]
    assert complete["status"] == ("CANCELLED" if cancelled else "FAILED")
    assert complete["seq"] == 3 + MAX_UNPERSISTED_MESSAGES + 1


class WorkerDied(BaseException):
    """The Lambda stops here: nothing after this line of the worker runs."""


def test_a_complete_lost_with_its_worker_is_sent_when_lambda_delivers_the_batch_again(
    alice, management, monkeypatch
):
    # GIVEN a worker that stores the outcome and dies before the complete goes out
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 1, "page_ms": 0}})
    real_send = Audience.send

    def die_at_the_complete(self, message, **kwargs):
        if message["type"] == "complete":
            raise WorkerDied
        return real_send(self, message, **kwargs)

    monkeypatch.setattr(Audience, "send", die_at_the_complete)
    batch = Stream().next_event()
    with pytest.raises(WorkerDied):
        processor.handler(batch, FakeContext())
    monkeypatch.setattr(Audience, "send", real_send)
    item = store.get_request(owner_key("t1", "alice"), "r-1")
    assert item.status == "COMPLETED"
    assert not [m for m in management.messages("conn-alice") if m["type"] == "complete"]

    # WHEN Lambda delivers the failed batch again, and the sweeper runs after the lease
    processor.handler(batch, FakeContext())
    swept = sweep("us-east-1", runtime.current().delivery, now=10**15)

    # THEN the stored complete goes out once, from the batch's second run, with its seq;
    # the request ran once and is not left for the sweeper
    [complete] = [m for m in management.messages("conn-alice") if m["type"] == "complete"]
    assert complete["status"] == "COMPLETED" and complete["result"]["pages"] == 1
    assert complete["seq"] == int(item.seq)
    assert store.get_request(owner_key("t1", "alice"), "r-1").attempt == 1
    assert swept.resent == [] and swept.redriven == []


def test_a_record_that_comes_again_for_a_request_running_sends_nothing(alice, management):
    # GIVEN a request claimed by a worker that is still running it
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 1}})
    batch = Stream().next_event()
    item = store.get_request(owner_key("t1", "alice"), "r-1")
    assert store.claim_request(item, 1_000, 10**15)

    # WHEN its record comes again
    processor.handler(batch, FakeContext())

    # THEN nothing is sent and nothing runs
    assert management.messages("conn-alice") == []
    assert store.get_request(owner_key("t1", "alice"), "r-1").status == "PROCESSING"


def test_a_record_that_comes_again_for_a_request_cancelled_before_its_claim_sends_nothing(
    alice, management
):
    # GIVEN a request cancelled before any worker claimed it (its complete went out then)
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 1}})
    alice.send({"action": "cancel", "request_id": "r-1"})
    sent = len(management.messages("conn-alice"))

    # WHEN its record reaches the processor
    Stream().run()

    # THEN no second complete is sent
    assert len(management.messages("conn-alice")) == sent


def test_a_request_whose_complete_went_out_leaves_the_sweepers_index(alice, management):
    alice.send({"action": "explode", "id": "x-1"})

    Stream().run()

    assert [m["type"] for m in management.messages("conn-alice")] == ["complete"]
    assert store.due_requests("us-east-1", now_ms=10**15) == []
