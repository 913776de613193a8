"""The due index's keys: a request's shard, the partitions, the shards a reader queries."""

from __future__ import annotations

import pytest

from streamer import keys, schema


def test_a_requests_shard_is_stable_and_in_range():
    key = keys.request_key(keys.owner_key("acme", "alice"), "r-1")

    assert keys.due_shard(key, 16) == keys.due_shard(key, 16)
    assert all(0 <= keys.due_shard(f"{key}{n}", 16) < 16 for n in range(500))
    assert keys.due_shard(key, 1) == 0


def test_keys_spread_over_every_shard_about_evenly():
    counts = [0] * 8
    for n in range(8_000):
        counts[keys.due_shard(f"acme#alice#req-{n}", 8)] += 1

    assert min(counts) > 800 and max(counts) < 1_200


def test_shard_zero_is_the_layout_before_sharding():
    assert keys.sweep_partition("eu-west-1", 0) == "eu-west-1"
    assert keys.poll_partition("eu-west-1", 0) == "eu-west-1#waiting"
    assert keys.sweep_partition("eu-west-1", 5) == "eu-west-1#5"
    assert keys.poll_partition("eu-west-1", 5) == "eu-west-1#5#waiting"


def test_partitions_of_different_shards_and_kinds_never_collide():
    names = [keys.sweep_partition("r", s) for s in range(keys.MAX_DUE_SHARDS)]
    names += [keys.poll_partition("r", s) for s in range(keys.MAX_DUE_SHARDS)]

    assert len(set(names)) == len(names)


@pytest.mark.parametrize("shards", [1, 2, 64, 127])
def test_a_reader_reads_every_shard_and_in_turn_each_one_above(shards):
    read = [keys.shards_read(shards, turn) for turn in range(keys.MAX_DUE_SHARDS)]

    assert all(r[:shards] == tuple(range(shards)) and len(r) == shards + 1 for r in read)
    above = {r[-1] for r in read[: keys.MAX_DUE_SHARDS - shards]}
    assert above == set(range(shards, keys.MAX_DUE_SHARDS))


def test_at_the_most_shards_a_reader_reads_just_those():
    assert keys.shards_read(keys.MAX_DUE_SHARDS, 7) == tuple(range(keys.MAX_DUE_SHARDS))
    assert keys.shards_read(10**6, 0) == tuple(range(keys.MAX_DUE_SHARDS))


def test_each_shard_gets_its_share_of_a_runs_limit() -> None:
    assert keys.shard_share(500, 64) == 8
    assert keys.shard_share(4, 2) == 2
    assert keys.shard_share(5, 2) == 3
    assert keys.shard_share(100, 1) == 100
    assert keys.shard_share(3, 0) == 3


def test_with_the_cap_on_a_request_is_watched_by_the_cap_s_index_and_otherwise_the_due_index():
    assert keys.watched_by(20) == schema.REQUESTS_BY_ACTIVE_OWNER
    assert keys.watched_by(1) == schema.REQUESTS_BY_ACTIVE_OWNER
    assert keys.watched_by(0) == schema.REQUESTS_BY_DUE
