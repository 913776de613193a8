"""The store refuses every write the lifecycle table does not allow, by its DynamoDB condition.

For every (status, event) pair: a request is stored in that status, holding
everything the event's guards compare (same attempt, same `due_at`, same
`seq`, no cancel asked, a stale sync run), and the store's write for the event
is made. It applies exactly when the table has the pair, and then leaves the
request in the row's target status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import product

import boto3
import pytest

from streamer import config, schema, store
from streamer.keys import owner_key, request_key
from streamer.models import RequestItem, bind_models
from streamer.regions import Fence
from streamer.transitions import TRANSITIONS, Event, Guard, Status, target, transition
from tests.conftest import REGION, TABLES

OWNER = owner_key("t1", "alice")
KEY = request_key(OWNER, "r-1")
NOW = 1_000_000


@pytest.fixture(scope="module")
def moto_requests_table() -> Iterator[None]:
    """One mocked requests table for the module (made once: the product is large)."""
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as env:
        for name in config.ALL:
            env.delenv(name, raising=False)
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        }.items():
            env.setenv(name, value)
        with mock_aws():
            table = TABLES[config.REQUESTS_TABLE]
            request = schema.create_table_request(schema.REQUESTS, table)
            boto3.client("dynamodb", region_name=REGION).create_table(**request)
            bind_models("unused-connections", table, "unused-subscriptions", REGION)
            yield


@pytest.fixture
def requests_table(moto_requests_table: None) -> None:
    """The mocked requests table without the request the tests write."""
    RequestItem(KEY).delete()


def new_request(status: str, **fields) -> RequestItem:
    values = {
        "owner": OWNER,
        "request_id": "r-1",
        "tenant_id": "t1",
        "user_id": "alice",
        "action": "generate_report",
        "status": status,
        "origin_region": "us-east-1",
        "created_at": 1,
        "updated_at": 1,
        "ttl": NOW,
        **fields,
    }
    return RequestItem(KEY, **values)


def stored_in(status: Status) -> RequestItem:
    """A request in `status` whose every guard a writer holding it passes."""
    # A sync run last updated long ago, in the middle of its attempt, due, with messages out.
    new_request(
        status, kind="sync", attempt=1, seq=3, due_region="us-east-1", due_at=NOW - 1
    ).save()
    return store.get_request(OWNER, "r-1")


def finish(status: Status) -> Callable[[RequestItem], bool]:
    def write(item: RequestItem) -> bool:
        return store.finish_request(
            item,
            from_statuses=tuple(Status),
            attempt=int(item.attempt),
            status=status,
            seq=int(item.seq) + 1,
            now_ms=NOW,
            error={"code": "X"},
        )

    return write


WRITES: dict[Event, Callable[[RequestItem], bool]] = {
    Event.CREATE: lambda item: store.create_request(new_request("PENDING")),
    Event.TAKE_OVER: lambda item: store.create_request(
        new_request("PROCESSING", kind="sync", updated_at=NOW), stale_sync_before_ms=NOW
    ),
    Event.CLAIM: lambda item: store.claim_request(item, NOW, NOW + 60_000),
    Event.REPORT: lambda item: store.save_progress(
        item,
        int(item.attempt),
        percentage=50,
        message="half",
        seq=4,
        checkpoint=None,
        now_ms=NOW,
        status=item.status,
    ),
    Event.ASK_CANCEL: lambda item: store.request_cancel(item, NOW),
    Event.RETRY: lambda item: store.schedule_retry(
        item, int(item.attempt), retry_after=NOW + 5, seq=4, error={"code": "X"}, now_ms=NOW
    ),
    Event.DEFER: lambda item: store.defer_request(item, until=NOW + 5, now_ms=NOW),
    Event.WAIT: lambda item: store.wait_request(
        item,
        int(item.attempt),
        state={"job": "j-1"},
        poll_at=NOW + 5,
        poll_interval_ms=5,
        deadline_at=NOW + 50,
        seq=4,
        now_ms=NOW,
    ),
    Event.CLAIM_POLL: lambda item: store.claim_poll(item, NOW, NOW + 60_000),
    Event.REDRIVE: lambda item: store.redrive_request(item, now_ms=NOW, next_due_at=NOW + 5, seq=4),
    Event.POSTPONE: lambda item: store.postpone_request(item, until=NOW + 5),
    Event.COMPLETE: finish(Status.COMPLETED),
    Event.FAIL: finish(Status.FAILED),
    Event.CANCEL: finish(Status.CANCELLED),
    Event.COMPLETE_SENT: store.complete_sent,
    Event.MOVE: lambda item: store.take_over_request(
        item,
        Fence(expected=0, epoch=1),
        runner="eu-west-1",
        shard=0,
        now_ms=NOW,
        redrive_seq=None,
        next_due_at=NOW + 5,
    ),
}


def test_every_event_has_a_write():
    assert set(WRITES) == set(Event)


@pytest.mark.parametrize("status, event", list(product(Status, Event)), ids=lambda v: str(v))
def test_a_write_applies_exactly_when_the_table_allows_it(requests_table, status, event):
    item = stored_in(status)
    row = transition(status, event)

    applied = WRITES[event](item)

    assert applied == (row is not None)
    stored = store.get_request(OWNER, "r-1")
    assert stored.status == (row.target if row else status)


@pytest.mark.parametrize(
    "status", sorted({row.target for row in TRANSITIONS if row.source is None})
)
def test_a_request_is_created_once_in_the_statuses_the_table_starts_it_in(requests_table, status):
    assert store.create_request(new_request(status))
    assert not store.create_request(new_request(status))
    assert store.get_request(OWNER, "r-1").status == status


def test_a_request_is_not_created_in_a_status_the_table_does_not_start_it_in(requests_table):
    with pytest.raises(ValueError):
        store.create_request(new_request("COMPLETED"))


@pytest.mark.parametrize("event", [Event.CLAIM, Event.REPORT, Event.RETRY, Event.COMPLETE])
def test_a_writer_whose_attempt_was_taken_over_is_refused(requests_table, event):
    item = stored_in(next(row.source for row in TRANSITIONS if row.event == event))
    item.attempt = 7

    assert not WRITES[event](item)


@pytest.mark.parametrize("event", [Event.WAIT, Event.CLAIM_POLL, Event.REDRIVE, Event.POSTPONE])
def test_a_writer_whose_due_time_was_moved_is_refused(requests_table, event):
    item = stored_in(
        next(
            row.source
            for row in TRANSITIONS
            if row.event == event and Guard.SAME_DUE_AT in row.guards
        )
    )
    item.due_at = NOW - 2

    assert not WRITES[event](item)


def test_a_running_attempt_hands_its_work_out_after_the_sweeper_postponed_it(requests_table):
    # GIVEN a running attempt, whose request the sweeper made due later meanwhile
    item = stored_in(Status.PROCESSING)
    swept = store.get_request(OWNER, "r-1")
    assert store.postpone_request(swept, until=NOW + 60_000)

    # WHEN the attempt's handler returns Waiting, THEN its write is the attempt's to make
    assert WRITES[Event.WAIT](item)
    assert store.get_request(OWNER, "r-1").status == Status.WAITING


def test_progress_is_refused_once_a_cancel_was_asked(requests_table):
    item = stored_in(Status.PROCESSING)
    assert store.request_cancel(item, NOW)

    assert not WRITES[Event.REPORT](item)


def test_a_complete_is_marked_sent_only_for_the_seq_it_carried(requests_table):
    item = stored_in(Status.COMPLETED)
    item.seq = 2

    assert not store.complete_sent(item)


def test_a_sync_run_is_taken_over_only_once_stale(requests_table):
    stored_in(Status.PROCESSING)

    fresh = new_request("PROCESSING", kind="sync", updated_at=NOW)
    assert not store.create_request(fresh, stale_sync_before_ms=1)
    assert store.create_request(fresh, stale_sync_before_ms=NOW)
    assert target(Event.TAKE_OVER) is None


def test_a_writer_acts_only_on_the_statuses_it_read(requests_table):
    # GIVEN a request now WAITING, at the attempt and due time its writers hold
    item = stored_in(Status.WAITING)
    progress = {"percentage": 1, "message": "", "seq": 4, "checkpoint": None, "now_ms": NOW}

    # THEN writes meant for the request as PROCESSING or RETRYING are refused
    assert not store.save_progress(item, 1, status="PROCESSING", **progress)
    assert not store.finish_request(
        item, from_statuses=("PROCESSING",), attempt=1, status="FAILED", seq=4, now_ms=NOW
    )
    item.status = "RETRYING"
    assert not store.redrive_request(item, now_ms=NOW, next_due_at=NOW + 5, seq=4)
    assert store.get_request(OWNER, "r-1").status == "WAITING"


@pytest.mark.parametrize("status, event", [(r.source, r.event) for r in TRANSITIONS if r.source])
def test_a_writer_that_read_the_request_before_a_takeover_is_refused(requests_table, status, event):
    # GIVEN a request another region took over (epoch 0 -> 1) after this writer read it
    item = stored_in(status)
    RequestItem(KEY).update(actions=[RequestItem.epoch.set(1)])
    assert item.fence_epoch == 0

    # WHEN the writer writes what the table would otherwise allow, THEN it is refused
    assert not WRITES[event](item)
    assert store.get_request(OWNER, "r-1").status == status
