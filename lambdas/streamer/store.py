"""Reads and conditional writes of connections, requests and subscriptions.

Every status change is one conditional update on the request item, so two
workers racing on a request cannot both win; a lost race is reported as a
`False`/`None` return, never as an exception. Anything else DynamoDB raises
(throttling past the client's retries, network failure) surfaces as
`StoreUnavailable` so callers can ask to be retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import PynamoDBException

from streamer.models import (
    CANCELLED,
    PENDING,
    PROCESSING,
    RETRYING,
    TERMINAL,
    WAITING,
    Connection,
    RequestItem,
    Subscription,
    owner_key,
    request_key,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreUnavailable(Exception):
    """DynamoDB could not be reached or refused the call (e.g. throttling)."""


def _response_code(error: PynamoDBException) -> str | None:
    """DynamoDB's error code behind `error`, if DynamoDB answered at all.

    Not `error.cause_response_code`: botocore's `HTTPClientError`s (a
    connection closed, a read timed out) carry `response = None`, on which that
    property raises AttributeError.
    """
    response = getattr(error.cause, "response", None)
    if not isinstance(response, dict):
        return None
    return response.get("Error", {}).get("Code")


def _unavailable(error: Exception) -> StoreUnavailable:
    code = _response_code(error) if isinstance(error, PynamoDBException) else None
    return StoreUnavailable(code or type(error).__name__)


def _guard(call: Callable[[], T]) -> T:
    try:
        return call()
    except (PynamoDBException, BotoCoreError, ClientError) as error:
        raise _unavailable(error) from error


def _conditional(call: Callable[[], Any]) -> bool:
    """Run a conditional write: True if it applied, False if its condition failed."""
    try:
        call()
    except PynamoDBException as error:
        if _response_code(error) == "ConditionalCheckFailedException":
            return False
        raise _unavailable(error) from error
    except (BotoCoreError, ClientError) as error:
        raise _unavailable(error) from error
    return True


# Connections


def save_connection(connection: Connection) -> bool:
    """Store a new connection; False if one with this id exists already."""
    return _conditional(
        lambda: connection.save(condition=Connection.connection_id.does_not_exist())
    )


def get_connection(connection_id: str, *, consistent: bool = False) -> Connection | None:
    return _guard(lambda: _get_or_none(Connection, connection_id, consistent=consistent))


def touch_connection(connection_id: str, now_ms: int, ttl: int) -> bool:
    """Refresh `last_seen` and the expiry of an existing connection record."""
    connection = Connection(connection_id=connection_id)
    return _conditional(
        lambda: connection.update(
            actions=[Connection.last_seen.set(now_ms), Connection.ttl.set(ttl)],
            condition=Connection.connection_id.exists(),
        )
    )


def refill_bucket(connection_id: str, now_us: int, interval_us: int) -> bool:
    """Take a token of a full rate-limit bucket (`rate_tat` before `now_us`, or none yet).

    See `streamer.ratelimit` (times in microseconds). False if the connection
    has no record or its bucket is not full.
    """
    connection = Connection(connection_id=connection_id)
    return _conditional(
        lambda: connection.update(
            actions=[Connection.rate_tat.set(now_us + interval_us)],
            condition=Connection.connection_id.exists()
            & (Connection.rate_tat.does_not_exist() | (Connection.rate_tat < now_us)),
        )
    )


def take_token(connection_id: str, now_us: int, interval_us: int, tolerance_us: int) -> int | None:
    """Take a token of a rate-limit bucket that is not full but not empty; its new `rate_tat`.

    See `streamer.ratelimit` (times in microseconds). None if the bucket is
    full, empty, or missing.
    """
    connection = Connection(connection_id=connection_id)
    taken = _conditional(
        lambda: connection.update(
            actions=[Connection.rate_tat.add(interval_us)],
            condition=Connection.rate_tat.between(now_us, now_us + tolerance_us),
        )
    )
    return int(connection.rate_tat) if taken else None


def forget_connection(connection_id: str) -> None:
    """Delete a connection and every subscription it holds (idempotent)."""

    def delete() -> None:
        Connection(connection_id=connection_id).delete()
        for key in Subscription.by_connection.query(connection_id):
            Subscription(request_key=key.request_key, connection_id=connection_id).delete()

    _guard(delete)


# Subscriptions


def subscribe(owner: str, request_id: str, connection_id: str, endpoint: str, ttl: int) -> None:
    subscribe_key(request_key(owner, request_id), connection_id, endpoint, ttl)


def unsubscribe(owner: str, request_id: str, connection_id: str) -> None:
    unsubscribe_key(request_key(owner, request_id), connection_id)


def subscribers(owner: str, request_id: str) -> list[Subscription]:
    return subscribers_of_key(request_key(owner, request_id))


def subscribe_key(key: str, connection_id: str, endpoint: str, ttl: int) -> None:
    """Subscribe a connection to a request's or a topic's key."""
    subscription = Subscription(
        request_key=key, connection_id=connection_id, endpoint=endpoint, ttl=ttl
    )
    _guard(subscription.save)


def unsubscribe_key(key: str, connection_id: str) -> None:
    _guard(Subscription(request_key=key, connection_id=connection_id).delete)


def subscribers_of_key(key: str) -> list[Subscription]:
    return _guard(lambda: list(Subscription.query(key)))


def get_subscription(key: str, connection_id: str) -> Subscription | None:
    return _guard(lambda: _get_or_none(Subscription, key, connection_id))


def retain(key: str, row_id: str, message: dict[str, Any], ttl: int) -> None:
    """Keep `message` as the last one of a topic, in its reserved row `row_id`."""
    row = Subscription(request_key=key, connection_id=row_id, message=message, ttl=ttl)
    _guard(row.save)


def connections_of_user(tenant_id: str, user_id: str) -> list[Connection]:
    """Every open connection of one user (the connections table's by_user index)."""
    user_key = owner_key(tenant_id, user_id)
    return _guard(lambda: list(Connection.by_user.query(user_key)))


# Requests


def _get_or_none(model: type[T], *keys: str, consistent: bool = False) -> T | None:
    try:
        return model.get(*keys, consistent_read=consistent)  # type: ignore[attr-defined]
    except model.DoesNotExist:  # type: ignore[attr-defined]
        return None


def get_request(owner: str, request_id: str, *, consistent: bool = True) -> RequestItem | None:
    key = request_key(owner, request_id)
    return _guard(lambda: _get_or_none(RequestItem, key, consistent=consistent))


def create_request(item: RequestItem, *, stale_sync_before_ms: int | None = None) -> bool:
    """Insert a new request; False if its id is taken.

    With `stale_sync_before_ms`, a sync request still PROCESSING since before
    that time (its router died mid-run) may be taken over.
    """
    condition = RequestItem.request_key.does_not_exist()
    if stale_sync_before_ms is not None:
        condition = condition | (
            (RequestItem.kind == "sync")
            & (RequestItem.status == PROCESSING)
            & (RequestItem.updated_at < stale_sync_before_ms)
        )
    return _conditional(lambda: item.save(condition=condition))


def claim_request(item: RequestItem, now_ms: int, lease_expires_at: int) -> bool:
    """PENDING -> PROCESSING for the attempt after the one `item` shows.

    On success `item` holds the new state. False if another worker claimed it,
    it was cancelled, or it is not PENDING any more.
    """
    return _conditional(
        lambda: item.update(
            actions=[
                RequestItem.status.set(PROCESSING),
                RequestItem.attempt.add(1),
                RequestItem.lease_expires_at.set(lease_expires_at),
                RequestItem.due_region.set(item.origin_region),
                RequestItem.due_at.set(lease_expires_at),
                RequestItem.updated_at.set(now_ms),
            ],
            condition=(RequestItem.status == PENDING) & (RequestItem.attempt == item.attempt),
        )
    )


def _running(item: RequestItem, attempt: int, status: str = PROCESSING) -> Any:
    return (RequestItem.status == status) & (RequestItem.attempt == attempt)


def save_progress(
    item: RequestItem,
    attempt: int,
    *,
    percentage: float,
    message: str,
    seq: int,
    checkpoint: Any,
    now_ms: int,
    status: str = PROCESSING,
) -> bool:
    """Persist the latest progress (and checkpoint) of a running attempt (or a poll).

    False once the attempt no longer owns the request or it was asked to cancel.
    """
    actions = [
        RequestItem.progress.set(percentage),
        RequestItem.progress_message.set(message),
        RequestItem.seq.set(seq),
        RequestItem.updated_at.set(now_ms),
    ]
    if checkpoint is not None:
        actions.append(RequestItem.checkpoint.set(checkpoint))
    condition = _running(item, attempt, status) & (
        RequestItem.cancel_requested.does_not_exist() | (RequestItem.cancel_requested == False)  # noqa: E712
    )
    copy = RequestItem(item.request_key)
    return _conditional(lambda: copy.update(actions=actions, condition=condition))


def finish_request(
    item: RequestItem,
    *,
    from_statuses: tuple[str, ...],
    attempt: int | None,
    status: str,
    seq: int,
    now_ms: int,
    result: Any = None,
    error: dict[str, Any] | None = None,
    progress: float | None = None,
    deliver_by: int | None = None,
) -> bool:
    """Move a request to a terminal status, if it is still in one of `from_statuses`.

    `attempt`, when given, must still be the request's attempt (the caller's
    lease). With `deliver_by`, the request stays in the sweeper's index until
    then, unless `complete_sent` takes it off first: a `complete` lost with
    its worker is sent again. On success `item` holds the final state.
    """
    actions = [
        RequestItem.status.set(status),
        RequestItem.seq.set(seq),
        RequestItem.updated_at.set(now_ms),
        RequestItem.lease_expires_at.remove(),
        RequestItem.active_owner.remove(),
    ]
    if deliver_by is None:
        actions += [RequestItem.due_region.remove(), RequestItem.due_at.remove()]
    else:
        actions += [
            RequestItem.due_region.set(item.origin_region),
            RequestItem.due_at.set(deliver_by),
        ]
    if result is not None:
        actions.append(RequestItem.result.set(result))
    if error is not None:
        actions.append(RequestItem.error.set(error))
    if progress is not None:
        actions.append(RequestItem.progress.set(progress))
    condition = RequestItem.status.is_in(*from_statuses)
    if attempt is not None:
        condition = condition & (RequestItem.attempt == attempt)
    return _conditional(lambda: item.update(actions=actions, condition=condition))


def complete_sent(item: RequestItem) -> bool:
    """Take an ended request off the sweeper's index: its `complete` went out."""
    copy = RequestItem(item.request_key)
    return _conditional(
        lambda: copy.update(
            actions=[RequestItem.due_region.remove(), RequestItem.due_at.remove()],
            condition=RequestItem.status.is_in(*TERMINAL) & (RequestItem.seq == int(item.seq)),
        )
    )


def schedule_retry(
    item: RequestItem, attempt: int, *, retry_after: int, seq: int, error: dict, now_ms: int
) -> bool:
    """PROCESSING -> RETRYING: the sweeper puts it back to PENDING at `retry_after`."""
    return _conditional(
        lambda: item.update(
            actions=[
                RequestItem.status.set(RETRYING),
                RequestItem.retry_after.set(retry_after),
                RequestItem.due_at.set(retry_after),
                RequestItem.seq.set(seq),
                RequestItem.error.set(error),
                RequestItem.lease_expires_at.remove(),
                RequestItem.updated_at.set(now_ms),
            ],
            condition=_running(item, attempt),
        )
    )


def redrive_request(item: RequestItem, *, now_ms: int, next_due_at: int, seq: int) -> bool:
    """Put a due request back to PENDING (a MODIFY the stream filter picks up).

    `seq` is the last one its messages may have used; the next attempt goes on
    from there. Conditional on the request being unchanged since the sweeper
    read it.
    """
    return _conditional(
        lambda: item.update(
            actions=[
                RequestItem.status.set(PENDING),
                RequestItem.seq.set(seq),
                RequestItem.due_at.set(next_due_at),
                RequestItem.lease_expires_at.remove(),
                RequestItem.retry_after.remove(),
                RequestItem.updated_at.set(now_ms),
            ],
            condition=(RequestItem.status == item.status)
            & (RequestItem.attempt == item.attempt)
            & (RequestItem.due_at == item.due_at),
        )
    )


def poll_partition(region: str) -> str:
    """The `by_due` partition of a region's WAITING requests: the poller's, not the sweeper's."""
    return f"{region}#waiting"


def wait_request(
    item: RequestItem,
    attempt: int,
    *,
    state: dict[str, Any],
    poll_at: int,
    poll_interval_ms: int,
    deadline_at: int,
    seq: int,
    now_ms: int,
    poll_failures: int = 0,
) -> bool:
    """PROCESSING or a claimed WAITING -> WAITING until `poll_at`, with the handler's state.

    `poll_failures` counts the polls in a row that failed temporarily (0 after
    one that did not). Conditional on the caller still holding the request:
    same attempt, and the `due_at` its claim set (another claim moves it).
    """
    failures = (
        RequestItem.poll_failures.set(poll_failures)
        if poll_failures
        else RequestItem.poll_failures.remove()
    )
    return _conditional(
        lambda: item.update(
            actions=[
                RequestItem.status.set(WAITING),
                RequestItem.wait_state.set(state),
                RequestItem.poll_interval_ms.set(poll_interval_ms),
                RequestItem.deadline_at.set(deadline_at),
                failures,
                RequestItem.due_region.set(poll_partition(item.origin_region)),
                RequestItem.due_at.set(poll_at),
                RequestItem.seq.set(seq),
                RequestItem.lease_expires_at.remove(),
                RequestItem.updated_at.set(now_ms),
            ],
            condition=RequestItem.status.is_in(PROCESSING, WAITING)
            & (RequestItem.attempt == attempt)
            & (RequestItem.due_at == int(item.due_at)),
        )
    )


def claim_poll(item: RequestItem, now_ms: int, lease_expires_at: int) -> bool:
    """Take a due WAITING request for one poll; False if another poller took it first.

    The claim moves `due_at` to the lease's end, so the request leaves the due
    set (no second poller sees it) and comes back if this poller dies.
    """
    return _conditional(
        lambda: item.update(
            actions=[
                RequestItem.due_at.set(lease_expires_at),
                RequestItem.updated_at.set(now_ms),
            ],
            condition=(RequestItem.status == WAITING)
            & (RequestItem.attempt == item.attempt)
            & (RequestItem.due_at == int(item.due_at)),
        )
    )


def waiting_requests(region: str, now_ms: int, limit: int = 100) -> list[RequestItem]:
    """WAITING requests of this region whose poll time has come."""
    return _guard(
        lambda: list(
            RequestItem.by_due.query(
                poll_partition(region), RequestItem.due_at <= now_ms, limit=limit
            )
        )
    )


def request_cancel(item: RequestItem, now_ms: int) -> bool:
    """Ask the worker running a PROCESSING request to stop."""
    return _conditional(
        lambda: item.update(
            actions=[RequestItem.cancel_requested.set(True), RequestItem.updated_at.set(now_ms)],
            condition=RequestItem.status == PROCESSING,
        )
    )


def cancel_requested(owner: str, request_id: str) -> bool:
    """Whether a request was asked to stop or is already CANCELLED (consistent read)."""
    item = get_request(owner, request_id)
    return item is None or bool(item.cancel_requested) or item.status == CANCELLED


def due_requests(region: str, now_ms: int, limit: int = 100) -> list[RequestItem]:
    """Requests of this region whose lease, retry time or pickup time has passed."""
    return _guard(
        lambda: list(RequestItem.by_due.query(region, RequestItem.due_at <= now_ms, limit=limit))
    )


def due_request_keys(region: str, now_ms: int, limit: int = 100) -> list[str]:
    """The keys of `due_requests`, to read one by one: one unreadable item spoils no other."""
    return _guard(
        lambda: [
            item.request_key
            for item in RequestItem.by_due.query(
                region,
                RequestItem.due_at <= now_ms,
                limit=limit,
                attributes_to_get=["request_key"],
            )
        ]
    )


def get_request_by_key(key: str) -> RequestItem | None:
    """A request by its `request_key` (consistent read)."""
    return _guard(lambda: _get_or_none(RequestItem, key, consistent=True))


def count_active(owner: str) -> int:
    """Async requests of this owner that have not ended (eventually consistent)."""
    return _guard(lambda: RequestItem.by_active_owner.count(owner))
