"""The due index spread over shards: the sweeper and the poller find due requests on each."""

from __future__ import annotations

from streamer import config, keys, runtime, store
from streamer.models import owner_key
from streamer.sweeper import SWEEP_TURN_MS, sweep
from tests.functional.helpers import Client
from tests.functional.test_sweeper import claim_and_die

OWNER = owner_key("t1", "alice")


def ids_covering(shards: int) -> list[str]:
    """Request ids of alice whose keys fall on every one of `shards` shards."""
    by_shard: dict[int, str] = {}
    n = 0
    while len(by_shard) < shards:
        request_id = f"r-{n}"
        by_shard.setdefault(keys.due_shard(keys.request_key(OWNER, request_id), shards), request_id)
        n += 1
    return [by_shard[shard] for shard in range(shards)]


def queue(request_ids: list[str], monkeypatch, shards: int) -> None:
    monkeypatch.setenv(config.DUE_SHARDS, str(shards))
    monkeypatch.setenv(config.MAX_ACTIVE_REQUESTS, "0")
    runtime.reset()
    alice = Client("conn-alice", user="alice", tenant="t1")
    alice.connect()
    for request_id in request_ids:
        alice.send({"action": "generate_report", "id": request_id, "payload": {"pages": 1}})


def test_requests_are_keyed_under_their_own_shard(test_app, management, monkeypatch):
    request_ids = ids_covering(4)
    queue(request_ids, monkeypatch, shards=4)

    partitions = {store.get_request(OWNER, r).due_region for r in request_ids}

    assert partitions == {"us-east-1", "us-east-1#1", "us-east-1#2", "us-east-1#3"}


def test_the_sweeper_finds_due_requests_on_every_shard(test_app, management, monkeypatch):
    # GIVEN one request on each of 4 shards, each claimed by a worker that died
    request_ids = ids_covering(4)
    queue(request_ids, monkeypatch, shards=4)
    for request_id in request_ids:
        claim_and_die(request_id, now=1_000)

    # WHEN the sweeper runs after their leases
    report = sweep("us-east-1", runtime.current().delivery, now=2_000, shards=4)

    # THEN every one of them is re-driven
    assert sorted(report.redriven) == sorted(request_ids)
    assert {store.get_request(OWNER, r).status for r in request_ids} == {"PENDING"}


def test_after_the_shard_count_is_lowered_requests_on_dropped_shards_are_still_swept(
    test_app, management, monkeypatch
):
    # GIVEN requests keyed under 8 shards, whose workers died, and the count lowered to 2
    request_ids = ids_covering(8)
    queue(request_ids, monkeypatch, shards=8)
    for request_id in request_ids:
        claim_and_die(request_id, now=1_000)

    # WHEN the sweeper, reading 2 shards (and one more a turn), runs once a turn, 6 turns
    redriven: list[str] = []
    for turn in range(8 - 2):
        now = 2_000 + turn * SWEEP_TURN_MS
        redriven += sweep("us-east-1", runtime.current().delivery, now=now, shards=2).redriven

    # THEN every request is re-driven (again each pickup timeout, no processor
    # running here), and keyed again under one of the 2 shards
    assert set(redriven) == set(request_ids)
    partitions = {store.get_request(OWNER, r).due_region for r in request_ids}
    assert partitions <= {"us-east-1", "us-east-1#1"}


def test_a_backlog_on_one_shard_does_not_starve_the_others(test_app, management, monkeypatch):
    # GIVEN a backlog of six due requests on shard 0 and one on shard 1 (pending, never
    # picked up: due at their pickup time)
    on_zero, on_one, n = [], [], 0
    while len(on_zero) < 6 or not on_one:
        request_id = f"b-{n}"
        shard = keys.due_shard(keys.request_key(OWNER, request_id), 2)
        (on_zero if shard == 0 else on_one).append(request_id)
        n += 1
    queue([*on_zero[:6], on_one[0]], monkeypatch, shards=2)

    # WHEN a sweep reads at most four of them
    far_future = 10**13
    found = store.due_items("us-east-1", far_future, limit=4, shards=[0, 1])

    # THEN shard 1's request is among them: each shard gets its share of the limit
    assert on_one[0] in {item.request_id for item in found}
    assert len(found) <= 4


TODAYS = {"us-east-1", "us-east-1#1"}


def test_after_the_count_is_lowered_a_claim_keys_the_request_under_todays_shards(
    test_app, management, monkeypatch
):
    # GIVEN a request on a dropped shard, whose handler fails with a retryable error
    from streamer.entry import processor
    from tests.conftest import FakeContext
    from tests.functional.helpers import Stream

    request_id = "f-0"
    while keys.due_shard(keys.request_key(OWNER, request_id), 8) < 2:
        request_id += "0"
    monkeypatch.setenv(config.DUE_SHARDS, "8")
    monkeypatch.setenv(config.MAX_ACTIVE_REQUESTS, "0")
    runtime.reset()
    alice = Client("conn-alice", user="alice", tenant="t1")
    alice.connect()
    alice.send({"action": "flaky", "id": request_id, "payload": {"succeed_on": 99}})
    monkeypatch.setenv(config.DUE_SHARDS, "2")
    runtime.reset()

    # WHEN a worker claims and runs it, and it goes to RETRYING
    processor.handler(Stream().next_event(), FakeContext())

    # THEN its retry is due on one of today's shards, where the sweeper reads every minute
    item = store.get_request(OWNER, request_id)
    assert item.status == "RETRYING"
    assert item.due_region in TODAYS and item.shard < 2


def test_after_the_count_is_lowered_a_postponed_run_is_keyed_under_todays_shards(
    test_app, management, monkeypatch
):
    # GIVEN a request on a dropped shard, claimed (before the change) with a lease that
    # outlasts the sweep below
    request_id = ids_covering(8)[7]
    queue([request_id], monkeypatch, shards=8)
    item = store.get_request(OWNER, request_id)
    pickup = int(item.due_at)
    assert store.claim_request(item, pickup - 1_000, pickup + 500 * SWEEP_TURN_MS)

    # WHEN the sweeper, reading 2 shards and the dropped one this turn, finds it still running
    first = pickup // SWEEP_TURN_MS + 1
    turn = next(t for t in range(first, first + 200) if 7 in keys.shards_read(2, t))
    now = turn * SWEEP_TURN_MS
    report = sweep("us-east-1", runtime.current().delivery, now=now, shards=2)

    # THEN it is postponed to its lease's end on one of today's shards, not left on the
    # dropped one, which the sweeper reads again only many turns later
    assert report.postponed == [request_id]
    assert store.get_request(OWNER, request_id).due_region in TODAYS
