"""External jobs: a handler returns `Waiting`, the scheduled poller polls it to its end."""

from __future__ import annotations

import pytest

from streamer import runtime, store
from streamer.audience import Audience
from streamer.models import owner_key
from streamer.poller import poll_due
from streamer.processor import Processor
from streamer.protocol import now_ms
from streamer.sweeper import sweep
from tests.functional import apps
from tests.functional.helpers import Client, Stream

OWNER = owner_key("t1", "alice")


def poller() -> Processor:
    rt = runtime.current()
    return Processor(rt.settings, rt.app, rt.delivery, lease_ms=lambda: 60_000)


def start_job(alice: Client, request_id: str, count: int, **payload) -> None:
    alice.send(
        {"action": "external_count", "id": request_id, "payload": {"count": count, **payload}}
    )
    Stream().run()


def poll_until_idle(limit: int = 50) -> int:
    """Run the poller until nothing is due; return how many runs polled something."""
    runs = 0
    while poll_due(poller(), now_ms()).polled:
        runs += 1
        assert runs < limit
    return runs


def test_a_waiting_job_is_polled_to_completion_with_its_aggregates(alice, management):
    # GIVEN a job of 5 items handed to the external system
    start_job(alice, "j-1", 5)
    item = store.get_request(OWNER, "j-1")
    assert item.status == "WAITING" and item.wait_state == {"job": "j-1"}
    # the sweeper leaves it alone: it is the poller's
    assert not sweep("us-east-1", runtime.current().delivery, now_ms() + 10_000).redriven

    # WHEN the poller runs until the job ends (2 items per poll)
    assert poll_until_idle() == 3

    # THEN it is COMPLETED with the provider's aggregates, told by exactly one complete
    item = store.get_request(OWNER, "j-1")
    expected = {"processed": 5, "succeeded": 4, "failed": 1}
    assert item.status == "COMPLETED" and item.result == expected
    messages = management.messages("conn-alice")
    assert [m["type"] for m in messages].count("complete") == 1
    assert messages[-1]["type"] == "complete" and messages[-1]["result"] == expected
    progress = [m for m in messages if m["type"] == "progress"]
    assert progress[-1]["metadata"] == expected
    # and seq goes on across the polls
    seqs = [m["seq"] for m in messages if "seq" in m]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_a_claimed_job_is_not_polled_by_a_second_poller(alice):
    # GIVEN two pollers that read the same due job
    start_job(alice, "j-1", 4)
    now = now_ms()
    [first] = store.waiting_requests("us-east-1", now)
    [second] = store.waiting_requests("us-east-1", now)

    # WHEN both try to claim it
    # THEN only one wins, and the job is off the due list until its claim expires
    assert store.claim_poll(first, now, now + 60_000)
    assert not store.claim_poll(second, now, now + 60_000)
    assert store.waiting_requests("us-east-1", now + 1_000) == []
    assert poll_due(poller(), now + 1_000).polled == []
    assert apps.polls == []


def test_a_job_past_its_deadline_fails_with_timeout(alice, management):
    # GIVEN a job whose external work must end within 1 s
    start_job(alice, "j-1", 50, deadline_s=1)

    # WHEN the poller runs after the deadline
    report = poll_due(poller(), now_ms() + 2_000)

    # THEN it is not polled, and ends FAILED with TIMEOUT
    assert report.timed_out == ["j-1"] and apps.polls == []
    item = store.get_request(OWNER, "j-1")
    assert item.status == "FAILED" and item.error["code"] == "TIMEOUT"
    [complete] = [m for m in management.messages("conn-alice") if m["type"] == "complete"]
    assert complete["error"]["code"] == "TIMEOUT"


def test_an_outage_of_the_external_system_is_retried_later_and_later(alice):
    # GIVEN a job, and the external system failing its status calls
    start_job(alice, "j-1", 4)
    apps.external_outage.set()

    # WHEN the poller runs whenever the job is due, five times during the outage
    pauses = []
    for _ in range(5):
        due_at = int(store.get_request(OWNER, "j-1").due_at)
        before = now_ms()
        assert poll_due(poller(), due_at).polled == ["j-1"]
        after = now_ms()
        # the next poll time is counted from the poll's end (between before and after)
        next_at = int(store.get_request(OWNER, "j-1").due_at)
        pauses.append((next_at - after, next_at - before))

    # THEN the job is still WAITING with its state (no attempts used up), each poll
    # put off longer than the one before: half to all of 1, 2, 4, 8, 16 s
    item = store.get_request(OWNER, "j-1")
    assert item.status == "WAITING" and item.wait_state == {"job": "j-1"}
    assert item.poll_failures == 5
    assert apps.polls == ["j-1"] * 5
    for failures, (shortest, longest) in enumerate(pauses, start=1):
        ceiling = 1_000 * 2 ** (failures - 1)
        assert max(1_000, ceiling // 2) <= longest and shortest <= ceiling, pauses

    # WHEN the system is back, THEN the job completes, polled at its own pace again
    apps.external_outage.clear()
    due_at = int(item.due_at)
    assert poll_due(poller(), due_at).polled == ["j-1"]
    assert store.get_request(OWNER, "j-1").poll_failures is None
    while poll_due(poller(), now_ms() + 2_000).polled:
        pass
    assert store.get_request(OWNER, "j-1").status == "COMPLETED"


def test_a_backed_off_job_still_ends_at_its_deadline(alice, management):
    # GIVEN a job with a 3-second deadline, and the external system down
    start_job(alice, "j-1", 4, deadline_s=3)
    apps.external_outage.set()
    deadline_at = int(store.get_request(OWNER, "j-1").deadline_at)

    # WHEN the poller runs whenever the job is due
    for _ in range(10):
        item = store.get_request(OWNER, "j-1")
        if item.status != "WAITING":
            break
        # THEN no backoff puts the next poll past the deadline
        assert int(item.due_at) <= deadline_at
        poll_due(poller(), max(int(item.due_at), now_ms()))

    # and the job ends TIMEOUT when the deadline comes
    item = store.get_request(OWNER, "j-1")
    assert item.status == "FAILED" and item.error["code"] == "TIMEOUT"


def test_a_waiting_job_is_cancelled_at_once(alice, management):
    # GIVEN a waiting job
    start_job(alice, "j-1", 10)

    # WHEN its owner cancels it
    alice.send({"action": "cancel", "request_id": "j-1"})

    # THEN it is CANCELLED and the poller never polls it
    assert store.get_request(OWNER, "j-1").status == "CANCELLED"
    assert poll_due(poller(), now_ms() + 2_000).polled == []
    assert apps.polls == []


def test_more_jobs_than_a_batch_are_all_polled_in_one_run(alice):
    # GIVEN 10 jobs, more than a batch of 4 (each user may have 20 active requests)
    for i in range(10):
        start_job(alice, f"j-{i}", 2)

    # WHEN the poller runs once, 4 polls at a time
    report = poll_due(poller(), now_ms(), batch_size=4)

    # THEN every job was polled once and completed
    jobs = [f"j-{i}" for i in range(10)]
    assert sorted(report.polled) == sorted(jobs) and sorted(apps.polls) == sorted(jobs)
    assert {store.get_request(OWNER, job).status for job in jobs} == {"COMPLETED"}


def test_a_sync_action_cannot_wait(alice):
    # GIVEN a sync action that returns Waiting
    # WHEN it is called
    answer = alice.send({"action": "sync_wait", "id": "s-1"})

    # THEN the caller is told it failed, and nothing is left waiting
    assert answer["type"] == "response" and answer["error"]["code"] == "PROCESSING_FAILED"
    assert store.waiting_requests("us-east-1", now_ms() + 10_000) == []


class PollerDied(BaseException):
    """The poller stops here: nothing after this line of it runs."""


def test_a_complete_lost_with_its_poller_is_sent_by_the_sweeper_once(
    alice, management, monkeypatch
):
    # GIVEN a job whose last poll stores the outcome, and a poller that dies at the complete
    start_job(alice, "j-1", 2)
    real_send = Audience.send

    def die_at_the_complete(self, message, **kwargs):
        if message["type"] == "complete":
            raise PollerDied
        return real_send(self, message, **kwargs)

    monkeypatch.setattr(Audience, "send", die_at_the_complete)
    with pytest.raises(PollerDied):
        poll_until_idle()
    monkeypatch.setattr(Audience, "send", real_send)
    item = store.get_request(OWNER, "j-1")
    assert item.status == "COMPLETED"
    assert not [m for m in management.messages("conn-alice") if m["type"] == "complete"]

    # WHEN the sweeper runs before the poll's claim ended, and after
    delivery = runtime.current().delivery
    early = sweep("us-east-1", delivery, now=int(item.due_at) - 1)
    late = sweep("us-east-1", delivery, now=int(item.due_at))
    again = sweep("us-east-1", delivery, now=int(item.due_at) + 60_000)

    # THEN the stored complete goes out once, after the claim
    assert early.resent == [] and late.resent == ["j-1"] and again.resent == []
    [complete] = [m for m in management.messages("conn-alice") if m["type"] == "complete"]
    assert complete["status"] == "COMPLETED" and complete["seq"] == int(item.seq)
