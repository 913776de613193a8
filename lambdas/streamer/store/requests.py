"""The requests table: reading requests, creating them, and the due index's queries."""

from __future__ import annotations

from streamer.keys import poll_partition, request_key, sweep_partition
from streamer.models import CANCELLED, RequestItem
from streamer.store.conditions import Held, condition
from streamer.store.errors import conditional, get_or_none, guard
from streamer.transitions import Event, rows


def get_request(owner: str, request_id: str, *, consistent: bool = True) -> RequestItem | None:
    return get_request_by_key(request_key(owner, request_id), consistent=consistent)


def get_request_by_key(key: str, *, consistent: bool = True) -> RequestItem | None:
    """A request by its `request_key` (`streamer.keys.request_key`)."""
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


def due_request_keys(region: str, now_ms: int, limit: int = 100) -> list[str]:
    """The keys of `due_requests`, to read one by one: one unreadable item spoils no other."""
    partition = sweep_partition(region)
    return guard(
        lambda: [
            item.request_key
            for item in RequestItem.by_due.query(
                partition,
                RequestItem.due_at <= now_ms,
                limit=limit,
                attributes_to_get=["request_key"],
            )
        ]
    )


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
