"""The requests table: reading requests, creating them, and the due index's queries."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from streamer import aws, schema
from streamer.config import Settings
from streamer.keys import (
    owner_of_request_key,
    poll_partition,
    request_key,
    shard_share,
    sweep_partition,
)
from streamer.models import CANCELLED, RequestItem, decider_of, requests_in
from streamer.store.conditions import Held, condition
from streamer.store.errors import conditional, get_or_none, guard
from streamer.transitions import Event, rows

#: The shards read when a caller names none: those of the default shard count.
EVERY_SHARD = range(Settings.due_shards)
#: Keys one BatchGetItem takes, and the rounds of unprocessed keys asked again.
BATCH_GET_MAX = 100
UNPROCESSED_ROUNDS = 5
UNPROCESSED_BACKOFF_S = 0.05
BY_DUE = schema.index_of(schema.REQUESTS, schema.REQUESTS_BY_DUE)
BY_ACTIVE_OWNER = schema.index_of(schema.REQUESTS, schema.REQUESTS_BY_ACTIVE_OWNER)
#: What the sweeper's scan of the per-user cap's index keeps: the requests of one runner
#: that index alone watches (not keyed in the due index: `keys.watched_by`) whose time
#: passed. A scan of an index can filter on the attributes it projects and no others.
#: A keyed request has no `cap_due_at`.
UNKEYED_DUE = "attribute_exists(#due) AND #runner = :runner AND #due <= :now"
UNKEYED_DUE_NAMES = {"#runner": "origin_region", "#due": "cap_due_at"}
#: Segments of the parallel scan read at once.
SCAN_THREADS = 8


def get_request(owner: str, request_id: str, *, consistent: bool = True) -> RequestItem | None:
    """The request, or None. A consistent read is made at the request's decider
    (`models.decider_of`): it sees every write decided there, also one made from
    another region that has not replicated here yet. An eventually consistent
    read stays in this region's replica.
    """
    key = request_key(owner, request_id)
    model = requests_in(decider_of(owner)) if consistent else RequestItem
    return guard(lambda: get_or_none(model, key, consistent=consistent))


def create_request(item: RequestItem, *, stale_sync_before_ms: int | None = None) -> bool:
    """Insert a new request at its decider's table; False if its id is taken.

    The decider depends on the owner alone, so the same id sent to two regions
    meets one conditional put at one table. With `stale_sync_before_ms`, a sync
    request still PROCESSING since before that time (its router died mid-run)
    may be taken over.
    """
    if item.status not in {row.target for row in rows(Event.CREATE)}:
        raise ValueError(f"a request is not created {item.status}")
    written = condition(Event.CREATE, Held())
    if stale_sync_before_ms is not None:
        written = written | condition(Event.TAKE_OVER, Held(stale_before=stale_sync_before_ms))
    model = requests_in(decider_of(item.owner))
    if type(item) is model:
        return conditional(lambda: item.save(condition=written))
    placed = model()
    placed.attribute_values = dict(item.attribute_values)
    if not conditional(lambda: placed.save(condition=written)):
        return False
    item.attribute_values = placed.attribute_values
    return True


def cancel_requested(owner: str, request_id: str) -> bool:
    """Whether a request was asked to stop or is already CANCELLED (consistent read)."""
    item = get_request(owner, request_id)
    return item is None or bool(item.cancel_requested) or item.status == CANCELLED


def due_requests(
    region: str, now_ms: int, limit: int = 100, *, shards: Sequence[int] = EVERY_SHARD
) -> list[RequestItem]:
    """Requests of this region whose lease, retry time or pickup time has passed, on `shards`."""
    return _on_shards(
        [sweep_partition(region, shard) for shard in shards], now_ms, limit, RequestItem.by_due
    )


def _on_shards(partitions: list[str], now_ms: int, limit: int, index: Any) -> list[RequestItem]:
    """Up to `limit` requests due by `now_ms`, each partition's share of them
    (`keys.shard_share`). The index projects only keys, so each request found is then read from the
    table (consistently: what the caller decides on is the request as it is now).
    """
    keys: list[str] = []
    share = shard_share(limit, len(partitions))
    for partition in partitions:
        left = min(share, limit - len(keys))
        if left <= 0:
            break
        found = guard(
            lambda p=partition, n=left: list(index.query(p, RequestItem.due_at <= now_ms, limit=n))
        )
        keys += [item.request_key for item in found]
    if not keys:
        return []

    def read() -> dict[str, RequestItem]:
        items: dict[str, RequestItem] = {}
        for region, group in _by_decider(keys).items():
            for item in requests_in(region).batch_get(group, consistent_read=True):
                items[item.request_key] = item
        return items

    items = guard(read)
    return [items[key] for key in keys if key in items]


def _by_decider(keys: list[str]) -> dict[str, list[str]]:
    """Request keys grouped by the region whose table decides each (`models.decider_of`).

    The due index is read in this region's replica, but what is decided on a
    request must be read where it is decided: after a takeover the runner is
    not the decider, and its own replica may lag behind the progress (`seq`)
    the run persisted there. With one region, one group: the own table.
    """
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(decider_of(owner_of_request_key(key)), []).append(key)
    return groups


@dataclass(frozen=True)
class Unreadable:
    """An item of the requests table that does not parse as a request."""

    request_key: str
    error: Exception


def due_items(
    region: str,
    now_ms: int,
    limit: int = 100,
    *,
    shards: Sequence[int] = EVERY_SHARD,
    partition: Callable[[str, int], str] = sweep_partition,
) -> list[RequestItem | Unreadable]:
    """`due_requests`, each item parsed on its own: one that cannot be read spoils no other.

    Reads the sweeper's partition of each of `shards`, each for its share of
    `limit` (`keys.shard_share`, so no shard's backlog starves the others); the
    index projects only keys, so the items are then read from the table with
    consistent `BatchGetItem`s, and one that is gone meanwhile is
    left out. Paged with botocore's paginator (LastEvaluatedKey to ExclusiveStartKey:
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Query.Pagination.html)
    rather than PynamoDB's iterator, which parses as it reads and gives no key
    for an item it could not parse. The same Query on the index, so the same grant,
    and the same call budget as the function's PynamoDB calls (`aws.dynamodb_client`).
    `partition` (default the sweeper's, `keys.sweep_partition`) names the partition
    of each shard read: a region taking over another's stalled requests reads both
    kinds of that region's partitions in its own replica.
    """

    def query() -> list[RequestItem | Unreadable]:
        client = _client()
        keys: list[dict[str, Any]] = []
        share = shard_share(limit, len(shards))
        for shard in shards:
            left = min(share, limit - len(keys))
            if left <= 0:
                break
            pages = client.get_paginator("query").paginate(
                TableName=RequestItem.Meta.table_name,
                IndexName=BY_DUE.name,
                KeyConditionExpression="#partition = :partition AND #due <= :now",
                ExpressionAttributeNames={"#partition": BY_DUE.hash_key, "#due": BY_DUE.range_key},
                ExpressionAttributeValues={
                    ":partition": {"S": partition(region, shard)},
                    ":now": {"N": str(now_ms)},
                },
                PaginationConfig={"MaxItems": left},
            )
            keys += [raw["request_key"]["S"] for page in pages for raw in page["Items"]]
        return _items(client, keys)

    return guard(query)


def unkeyed_due_items(
    region: str, now_ms: int, limit: int = 100, *, segments: int = 1
) -> list[RequestItem | Unreadable]:
    """The requests `region` runs that only the per-user cap's index watches
    (`keys.watched_by`) and whose time (`due_at`) passed by `now_ms`: `due_items`
    for them, parsed one by one alike.

    A parallel scan of that index in `segments` segments (`Segment`,
    `TotalSegments`: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Scan.html#Scan.ParallelScan),
    at most `SCAN_THREADS` at once, each taking its share of `limit`
    (`keys.shard_share`). The index holds only requests that have not ended
    and projects only what the filter reads; the filter is applied after the
    read, so a scan costs the read of every entry it passes over, kept or not
    (Scan.html, "Filter expressions for scan"). The items found are then read
    from the table at their deciders, as `due_items` does.
    """
    segments = max(1, segments)
    share = shard_share(limit, segments)

    def scan() -> list[RequestItem | Unreadable]:
        client = _client()

        def segment(number: int) -> list[str]:
            pages = client.get_paginator("scan").paginate(
                TableName=RequestItem.Meta.table_name,
                IndexName=BY_ACTIVE_OWNER.name,
                FilterExpression=UNKEYED_DUE,
                ExpressionAttributeNames=UNKEYED_DUE_NAMES,
                ExpressionAttributeValues={
                    ":runner": {"S": region},
                    ":now": {"N": str(now_ms)},
                },
                Segment=number,
                TotalSegments=segments,
                PaginationConfig={"MaxItems": share},
            )
            return [raw["request_key"]["S"] for page in pages for raw in page["Items"]]

        if segments == 1:
            found = [segment(0)]
        else:
            threads = min(segments, SCAN_THREADS)
            with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
                found = list(pool.map(segment, range(segments)))
        keys = [key for part in found for key in part][:limit]
        return _items(client, keys)

    return guard(scan)


def _client() -> Any:
    """The DynamoDB client of this region's replica (the function's call budget)."""
    return aws.dynamodb_client(
        region_name=RequestItem.Meta.region,
        endpoint_url=getattr(RequestItem.Meta, "host", None),
    )


def _items(client: Any, keys: list[str]) -> list[RequestItem | Unreadable]:
    """The requests of `keys`, read consistently at their deciders and parsed one by one,
    in the order of `keys`; one gone meanwhile is left out."""
    found: dict[str, dict[str, Any]] = {}
    for decider, group in _by_decider(keys).items():
        model = requests_in(decider)
        reader = client
        if model is not RequestItem:
            reader = aws.dynamodb_client(
                region_name=model.Meta.region, endpoint_url=getattr(model.Meta, "host", None)
            )
        for raw in _read(reader, [{"S": key} for key in group]):
            found[raw["request_key"]["S"]] = raw
    return [_parsed(found[key]) for key in keys if key in found]


def _read(client: Any, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items of these request keys (raw), consistently read.

    BatchGetItem takes at most 100 keys and may leave some unprocessed, to ask again
    after an exponential backoff:
    https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html
    Keys still unprocessed after the last round are left for the next run.
    """
    table = RequestItem.Meta.table_name
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(keys), BATCH_GET_MAX):
        ask: dict[str, Any] = {
            table: {"Keys": [{"request_key": k} for k in keys[start : start + BATCH_GET_MAX]]}
        }
        ask[table]["ConsistentRead"] = True
        for round_ in range(UNPROCESSED_ROUNDS):
            if round_:
                time.sleep(UNPROCESSED_BACKOFF_S * 2 ** (round_ - 1))
            answer = client.batch_get_item(RequestItems=ask)
            for raw in answer.get("Responses", {}).get(table, []):
                found[raw["request_key"]["S"]] = raw
            ask = answer.get("UnprocessedKeys") or {}
            if not ask:
                break
    return [found[k["S"]] for k in keys if k["S"] in found]


def _parsed(raw: dict[str, Any]) -> RequestItem | Unreadable:
    try:
        return RequestItem.from_raw_data(raw)
    except Exception as error:
        # Whatever is wrong with this item (bad JSON, a wrong type), it is this item's alone.
        return Unreadable(raw.get("request_key", {}).get("S", ""), error)


def waiting_requests(
    region: str, now_ms: int, limit: int = 100, *, shards: Sequence[int] = EVERY_SHARD
) -> list[RequestItem]:
    """WAITING requests of this region whose poll time has come, on `shards`."""
    return _on_shards(
        [poll_partition(region, shard) for shard in shards], now_ms, limit, RequestItem.by_due
    )


def count_active(owner: str) -> int:
    """Async requests of this owner that have not ended (eventually consistent)."""
    return guard(lambda: RequestItem.by_active_owner.count(owner))
