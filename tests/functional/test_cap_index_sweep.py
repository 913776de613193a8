"""With the per-user cap on, a request is watched by the cap's index alone until something
moves it on by a time (`keys.watched_by`): the sweeper scans that index for it."""

from __future__ import annotations

import pytest

from bench import counting
from streamer import config, keys, runtime, schema, store, takeover
from streamer.config import PICKUP_TIMEOUT_MS
from streamer.models import owner_key
from streamer.regions import TakeoverSettings
from streamer.store import requests as request_store
from streamer.sweeper import UNKEYED, sweep
from tests.functional import test_bench_ledger
from tests.functional.helpers import Client

OWNER = owner_key("t1", "alice")
#: The meter on the runtime's DynamoDB calls, one ledger line a call (`bench.counting`).
ledger = test_bench_ledger.ledger


def queue(*request_ids: str, user: str = "alice") -> Client:
    client = Client(f"conn-{user}", user=user, tenant="t1")
    client.connect()
    for request_id in request_ids:
        client.send({"action": "generate_report", "id": request_id, "payload": {"pages": 1}})
    return client


def test_a_request_queued_under_the_cap_is_in_the_cap_s_index_only(test_app, management):
    queue("r-1")

    item = store.get_request(OWNER, "r-1")

    assert item.active_owner == OWNER and item.due_at is not None
    assert item.cap_due_at == item.due_at
    assert item.due_region is None and item.watched_by_cap


def test_without_the_cap_a_request_is_in_the_due_index_only(test_app, management, monkeypatch):
    monkeypatch.setenv(config.MAX_ACTIVE_REQUESTS, "0")
    runtime.reset()
    queue("r-1")

    item = store.get_request(OWNER, "r-1")

    assert item.active_owner is None and item.cap_due_at is None
    assert item.due_region == "us-east-1"


def test_a_claim_whose_lease_ends_after_the_pickup_time_leaves_it_in_the_cap_s_index_only(
    test_app, management
):
    queue("r-1")
    item = store.get_request(OWNER, "r-1")
    pickup = int(item.due_at)

    assert store.claim_request(item, 1_000, pickup + 60_000)

    item = store.get_request(OWNER, "r-1")
    assert item.status == "PROCESSING" and item.due_region is None
    assert int(item.due_at) == pickup


def test_a_claim_whose_lease_ends_first_moves_its_time_and_still_does_not_key_it(
    test_app, management
):
    queue("r-1")
    item = store.get_request(OWNER, "r-1")

    assert store.claim_request(item, 1_000, 1_010)

    item = store.get_request(OWNER, "r-1")
    assert int(item.due_at) == int(item.cap_due_at) == 1_010 and item.due_region is None


def test_a_claim_after_the_shard_count_changed_stores_today_s_shard_without_keying_it(
    test_app, management, monkeypatch
):
    # GIVEN a request queued under 4 shards, on a shard that 2 shards drop
    monkeypatch.setenv(config.DUE_SHARDS, "4")
    runtime.reset()
    request_id = next(
        f"r-{n}" for n in range(100) if keys.due_shard(keys.request_key(OWNER, f"r-{n}"), 4) >= 2
    )
    queue(request_id)
    item = store.get_request(OWNER, request_id)

    # WHEN a processor running with 2 shards claims it
    today = keys.due_shard(item.request_key, 2)
    assert store.claim_request(item, 1_000, 1_010, today)

    # THEN it is still the cap's index's alone, but the write that keys it later (a wait,
    # a redrive) keys it under a shard every run reads
    item = store.get_request(OWNER, request_id)
    assert item.due_region is None and item.shard == today


def test_a_request_never_picked_up_is_found_by_the_scan_and_keyed_by_its_redrive(
    test_app, management
):
    # GIVEN a request whose stream record was lost: it stays PENDING
    queue("r-1")
    pickup = int(store.get_request(OWNER, "r-1").due_at)

    # WHEN the sweeper runs before and then after its pickup time
    early = sweep("us-east-1", runtime.current().delivery, now=pickup - 1)
    late = sweep("us-east-1", runtime.current().delivery, now=pickup)

    # THEN only the second re-drives it, and from then on the due index has it
    assert early.redriven == [] and late.redriven == ["r-1"] and late.failed == []
    item = store.get_request(OWNER, "r-1")
    assert item.status == "PENDING" and item.due_region == "us-east-1"
    assert int(item.due_at) == pickup + PICKUP_TIMEOUT_MS and item.cap_due_at is None
    # and the scan no longer lists it: one reader for each stalled request
    assert request_store.unkeyed_due_items("us-east-1", pickup + 10 * PICKUP_TIMEOUT_MS) == []


def test_the_scan_lists_only_its_own_region_s_requests(test_app, management):
    queue("r-1")
    pickup = int(store.get_request(OWNER, "r-1").due_at)

    assert request_store.unkeyed_due_items("eu-west-1", pickup) == []
    [found] = request_store.unkeyed_due_items("us-east-1", pickup)
    assert found.request_id == "r-1"


@pytest.mark.parametrize("segments", [1, 3, 8])
def test_every_segment_of_the_scan_is_read(test_app, management, segments):
    request_ids = [f"r-{n}" for n in range(12)]
    queue(*request_ids)
    pickup = max(int(store.get_request(OWNER, r).due_at) for r in request_ids)

    found = request_store.unkeyed_due_items("us-east-1", pickup, limit=100, segments=segments)

    assert sorted(item.request_id for item in found) == sorted(request_ids)


def test_the_scan_takes_at_most_its_limit(test_app, management):
    request_ids = [f"r-{n}" for n in range(6)]
    queue(*request_ids)
    pickup = max(int(store.get_request(OWNER, r).due_at) for r in request_ids)

    found = request_store.unkeyed_due_items("us-east-1", pickup, limit=4, segments=2)

    assert len(found) == 4


def test_a_failed_scan_is_counted_and_the_due_index_is_still_swept(
    test_app, management, monkeypatch
):
    # GIVEN one request keyed in the due index (the cap off when it was queued) and one not
    monkeypatch.setenv(config.MAX_ACTIVE_REQUESTS, "0")
    runtime.reset()
    queue("r-keyed")
    monkeypatch.setenv(config.MAX_ACTIVE_REQUESTS, "20")
    runtime.reset()
    queue("r-watched", user="bob")
    pickup = max(
        int(store.get_request(OWNER, "r-keyed").due_at),
        int(store.get_request(owner_key("t1", "bob"), "r-watched").due_at),
    )

    # WHEN the scan of the cap's index fails
    def unavailable(*_, **__):
        raise store.StoreUnavailable("scan throttled")

    monkeypatch.setattr(store, "unkeyed_due_items", unavailable)
    report = sweep("us-east-1", runtime.current().delivery, now=pickup)

    # THEN the keyed request is re-driven all the same, and the scan counts as one failure
    assert report.redriven == ["r-keyed"] and report.failed == [UNKEYED]


def test_the_scan_filters_only_on_what_the_cap_s_index_projects():
    """A scan of an index reads only the attributes it projects: a filter on another one
    keeps nothing (moto, too, projects each entry before it applies the filter)."""
    index = schema.index_of(schema.REQUESTS, schema.REQUESTS_BY_ACTIVE_OWNER)
    readable = {index.hash_key, schema.REQUESTS.hash_key, *index.included}

    assert set(request_store.UNKEYED_DUE_NAMES.values()) <= readable
    assert index.projection == "INCLUDE"


def test_a_retry_stays_with_the_cap_s_index_due_at_its_retry_time(test_app, management):
    queue("r-1")
    item = store.get_request(OWNER, "r-1")
    assert store.claim_request(item, 1_000, 1_010)

    assert store.schedule_retry(item, 1, retry_after=5_000, seq=0, error={}, now_ms=1_005)

    item = store.get_request(OWNER, "r-1")
    assert item.status == "RETRYING" and item.due_region is None
    assert int(item.cap_due_at) == int(item.due_at) == 5_000
    [found] = request_store.unkeyed_due_items("us-east-1", 5_000)
    assert found.request_id == "r-1"


def test_once_a_wait_keys_it_its_polls_write_nothing_to_the_cap_s_index(
    test_app, management, ledger
):
    # GIVEN a request the cap's index alone watches, claimed
    queue("r-1")
    item = store.get_request(OWNER, "r-1")
    assert store.claim_request(item, 1_000, 1_010)

    # WHEN its attempt waits on external work, and a poll takes it and waits again
    assert store.wait_request(
        item,
        1,
        state={},
        poll_at=2_000,
        poll_interval_ms=1_000,
        deadline_at=90_000,
        seq=0,
        now_ms=1_005,
    )
    assert store.claim_poll(item, 2_000, 2_500)
    assert store.wait_request(
        item,
        1,
        state={},
        poll_at=3_000,
        poll_interval_ms=1_000,
        deadline_at=90_000,
        seq=0,
        now_ms=2_100,
    )

    # THEN the wait keyed it under the poller's partition and took it off the scan's
    # sight (one update of the cap's index), and the poll's two writes left that index alone
    item = store.get_request(OWNER, "r-1")
    assert item.due_region == "us-east-1#waiting" and item.cap_due_at is None
    lines = test_bench_ledger.read(ledger)
    writes = [x for x in lines if x["table"] == "requests" and x["op"] in counting.WRITES]
    on_cap_index = [w["index_units"].get("by_active_owner", 0) for w in writes]
    assert on_cap_index[-3:] == [1, 0, 0]
    # and the request still counts against the cap while it waits
    assert store.count_active(OWNER) == 1


def test_a_takeover_read_that_fails_leaves_the_other_reads_to_run(monkeypatch):
    reads = []

    def due_items(region, before, **kwargs):
        reads.append(kwargs["partition"].__name__)
        raise store.StoreUnavailable("throttled")

    def unkeyed_due_items(region, before, **kwargs):
        reads.append("scan")
        return []

    monkeypatch.setattr(store, "due_items", due_items)
    monkeypatch.setattr(store, "unkeyed_due_items", unkeyed_due_items)
    settings = TakeoverSettings(lease_s=930, sweep_interval_s=60, grace_s=30, heartbeat_stale_s=180)

    taken = takeover.take_over(
        "eu-west-1",
        "us-east-1",
        1_000_000,
        settings,
        redrive_seq=lambda item: None,
        shards=1,
        max_items=10,
        turn=0,
    )

    assert reads == ["sweep_partition", "poll_partition", "scan"]
    assert [key for key, _ in taken.failed] == [takeover.READ_FAILED, takeover.READ_FAILED]
