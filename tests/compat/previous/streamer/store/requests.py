"""The requests table: reading requests, creating them, and the due index's queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamer import aws, schema
from streamer.keys import poll_partition, request_key, sweep_partition
from streamer.models import CANCELLED, RequestItem
from streamer.store.conditions import Held, condition
from streamer.store.errors import conditional, get_or_none, guard
from streamer.transitions import Event, rows

BY_DUE = next(i for i in schema.REQUESTS.indexes if i.name == schema.REQUESTS_BY_DUE)


def get_request(owner: str, request_id: str, *, consistent: bool = True) -> RequestItem | None:
    key = request_key(owner, request_id)
    return guard(lambda: get_or_none(RequestItem, key, consistent=consistent))


def create_request(item: RequestItem, *, stale_sync_before_ms: int | None = None) -> bool:
    """Insert a new request; False if its id is taken.

    With `stale_sync_before_ms`, a sync request still PROCESSING since before
    that time (its router died mid-run) may be taken over.
    """
    if item.status not in {row.target for row in rows(Event.CREATE)}:
        raise ValueError(f"a request is not created {item.status}")
    written = condition(Event.CREATE, Held())
    if stale_sync_before_ms is not None:
        written = written | condition(Event.TAKE_OVER, Held(stale_before=stale_sync_before_ms))
    return conditional(lambda: item.save(condition=written))


def cancel_requested(owner: str, request_id: str) -> bool:
    """Whether a request was asked to stop or is already CANCELLED (consistent read)."""
    item = get_request(owner, request_id)
    return item is None or bool(item.cancel_requested) or item.status == CANCELLED


def due_requests(region: str, now_ms: int, limit: int = 100) -> list[RequestItem]:
    """Requests of this region whose lease, retry time or pickup time has passed."""
    partition = sweep_partition(region)
    return guard(
        lambda: list(RequestItem.by_due.query(partition, RequestItem.due_at <= now_ms, limit=limit))
    )


@dataclass(frozen=True)
class Unreadable:
    """An item of the requests table that does not parse as a request."""

    request_key: str
    error: Exception


def due_items(region: str, now_ms: int, limit: int = 100) -> list[RequestItem | Unreadable]:
    """`due_requests`, each item parsed on its own: one that cannot be read spoils no other.

    Paged with botocore's paginator (LastEvaluatedKey to ExclusiveStartKey:
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Query.Pagination.html)
    rather than PynamoDB's iterator, which parses as it reads and gives no key
    for an item it could not parse. The same Query on the index, so the same grant,
    and the same call budget as the function's PynamoDB calls (`aws.dynamodb_client`).
    """

    def query() -> list[RequestItem | Unreadable]:
        client = aws.dynamodb_client(
            region_name=RequestItem.Meta.region,
            endpoint_url=getattr(RequestItem.Meta, "host", None),
        )
        pages = client.get_paginator("query").paginate(
            TableName=RequestItem.Meta.table_name,
            IndexName=BY_DUE.name,
            KeyConditionExpression="#partition = :partition AND #due <= :now",
            ExpressionAttributeNames={"#partition": BY_DUE.hash_key, "#due": BY_DUE.range_key},
            ExpressionAttributeValues={
                ":partition": {"S": sweep_partition(region)},
                ":now": {"N": str(now_ms)},
            },
            PaginationConfig={"MaxItems": limit},
        )
        return [_parsed(raw) for page in pages for raw in page["Items"]]

    return guard(query)


def _parsed(raw: dict[str, Any]) -> RequestItem | Unreadable:
    try:
        return RequestItem.from_raw_data(raw)
    except Exception as error:
        # Whatever is wrong with this item (bad JSON, a wrong type), it is this item's alone.
        return Unreadable(raw.get("request_key", {}).get("S", ""), error)


def waiting_requests(region: str, now_ms: int, limit: int = 100) -> list[RequestItem]:
    """WAITING requests of this region whose poll time has come."""
    return guard(
        lambda: list(
            RequestItem.by_due.query(
                poll_partition(region), RequestItem.due_at <= now_ms, limit=limit
            )
        )
    )


def count_active(owner: str) -> int:
    """Async requests of this owner that have not ended (eventually consistent)."""
    return guard(lambda: RequestItem.by_active_owner.count(owner))
