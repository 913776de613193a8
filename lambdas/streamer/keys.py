"""The keys of the three tables and of the requests' due index, built in one place.

A request is addressable only through its owner (`tenant#user`), so an id of
another tenant cannot even be looked up. The `by_due` index is sparse and
split per region in two kinds of partitions: the sweeper's (requests that must
move on by `due_at`) and the poller's (WAITING requests whose next poll is at
`due_at`). Each kind is spread over `shards` partition key values, a request's
shard being a stable hash of its key: one partition key value of an index
takes about 1,000 write units a second, as on a table, and a throttled index
throttles the table's writes
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/warm-throughput-scenarios.html,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/throttling-key-range-limit-exceeded-mitigation.html,
https://repost.aws/knowledge-center/dynamodb-gsi-throttling-table).
Shard 0 is keyed as before sharding (`<region>`, `<region>#waiting`), so one
shard is the unsharded layout and items written before sharding are read as shard 0.
"""

from __future__ import annotations

import zlib

from streamer.schema import REQUESTS_BY_ACTIVE_OWNER, REQUESTS_BY_DUE

#: The most shards the due index may be spread over (`STREAMER_DUE_SHARDS` is bounded by it).
MAX_DUE_SHARDS = 128


def owner_key(tenant_id: str, user_id: str) -> str:
    """The requests table's owner part of a key, and the connections' `by_user` key."""
    return f"{tenant_id}#{user_id}"


def request_key(owner: str, request_id: str) -> str:
    """The key of one request, in the requests and the subscriptions tables."""
    return f"{owner}#{request_id}"


def stop_marker_id(key: str) -> str:
    """The connection id of the row, in a request's subscriptions partition, that asks its
    worker to stop: the subscriber read the worker makes anyway also sees a cancel.

    No API Gateway connection id starts with `~`, and the request's key in it makes each
    marker its own partition key value of the `by_connection` index, which is keyed by
    connection id (one constant would be one hot key for every cancel).
    """
    return f"~stop!{key}"


def owner_of_request_key(key: str) -> str:
    """The owner part of a request's key: a request id has no `#` (PROTOCOL.md, `id`)."""
    return key.rpartition("#")[0]


def due_shard(key: str, shards: int) -> int:
    """The due-index shard of the request keyed `key`, one of `range(shards)`.

    CRC-32 of the key, not `hash()`: the same in every process and Python version.
    """
    return zlib.crc32(key.encode("utf-8")) % max(1, shards)


def sweep_partition(region: str, shard: int = 0) -> str:
    """The `by_due` partition the sweeper reads: leases, retries, pickups, unsent completes."""
    return region if shard == 0 else f"{region}#{shard}"


def poll_partition(region: str, shard: int = 0) -> str:
    """The `by_due` partition of a region's WAITING requests: the poller's, not the sweeper's."""
    return f"{sweep_partition(region, shard)}#waiting"


def shard_share(limit: int, shards: int) -> int:
    """How many due requests a reader takes from each shard of a run of at most `limit`.

    `limit` over the shards, rounded up. Read in turn up to the whole limit, a shard
    with more due requests than the limit (a backlog after an outage) would fill every
    run and the shards after it would never be read; with the keys spread over the
    shards by hash, a backlog is spread alike and still drains `limit` a run.
    """
    return -(-limit // max(1, shards))


def shards_read(shards: int, turn: int) -> tuple[int, ...]:
    """The shards a reader of the due index queries: all of `range(shards)`, and one more.

    The one more is a shard at or above `shards`, a different one each `turn`
    (the sweeper and the poller pass the minute they run in): after the shard
    count was lowered, requests keyed under a dropped shard are still found,
    within `MAX_DUE_SHARDS - shards` turns, and re-keyed below `shards` by the
    write that moves them on.
    """
    shards = min(max(1, shards), MAX_DUE_SHARDS)
    dropped = MAX_DUE_SHARDS - shards
    extra = (shards + turn % dropped,) if dropped else ()
    return (*range(shards), *extra)


def watched_by(cap: int) -> str:
    """The index that finds a new async request should it stall, with the per-user cap `cap`.

    Each index an item enters and leaves costs a write there each way
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.Writes).
    With the cap on (`cap` > 0) the request is in the cap's index (`by_active_owner`)
    from its put to its finish anyway, so it is not put in the due index too: the
    sweeper scans the cap's index for the requests in it alone whose time passed
    (`store.unkeyed_due_items`), and the first write that moves one on by a time keys
    it in the due index. With the cap off, the due index from the put, as the only one.
    """
    return REQUESTS_BY_ACTIVE_OWNER if cap > 0 else REQUESTS_BY_DUE
