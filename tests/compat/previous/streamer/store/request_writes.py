"""The writes that move a request through its lifecycle, one conditional update each.

Which status a write goes from and to, and what else it checks, is the
lifecycle table's (`streamer.transitions`, turned into conditions by
`streamer.store.conditions`); each function here adds what the write stores.
False means the condition failed: another writer won, or the request moved on.
"""

from __future__ import annotations

from typing import Any

from streamer.keys import poll_partition
from streamer.models import PROCESSING, RequestItem
from streamer.store.conditions import Held, condition, moves
from streamer.store.errors import conditional
from streamer.transitions import Event, ending


def claim_request(item: RequestItem, now_ms: int, lease_expires_at: int) -> bool:
    """PENDING -> PROCESSING for the attempt after the one `item` shows.

    On success `item` holds the new state. False if another worker claimed it,
    it was cancelled, or it is not PENDING any more.
    """
    actions = [
        *moves(Event.CLAIM),
        RequestItem.attempt.add(1),
        RequestItem.lease_expires_at.set(lease_expires_at),
        RequestItem.due_region.set(item.origin_region),
        RequestItem.due_at.set(lease_expires_at),
        RequestItem.updated_at.set(now_ms),
    ]
    written = condition(Event.CLAIM, Held(attempt=int(item.attempt)))
    return conditional(lambda: item.update(actions=actions, condition=written))


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
    """Persist the latest progress (and checkpoint) of a running attempt or a poll.

    `status` is the one the caller runs it in (PROCESSING, or WAITING for a
    poll). False once the attempt no longer owns the request or it was asked
    to cancel.
    """
    actions = [
        RequestItem.progress.set(percentage),
        RequestItem.progress_message.set(message),
        RequestItem.seq.set(seq),
        RequestItem.updated_at.set(now_ms),
    ]
    if checkpoint is not None:
        actions.append(RequestItem.checkpoint.set(checkpoint))
    written = condition(Event.REPORT, Held(attempt=attempt, statuses=(status,)))
    copy = RequestItem(item.request_key)
    return conditional(lambda: copy.update(actions=actions, condition=written))


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

    `attempt` must still be the request's attempt (the caller's lease; None:
    the one `item` shows). With `deliver_by`, the request stays in the
    sweeper's index until then, unless `complete_sent` takes it off first: a
    `complete` lost with its worker is sent again. On success `item` holds the
    final state.
    """
    event = ending(status)
    actions = [
        *moves(event),
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
    held = Held(attempt=int(item.attempt) if attempt is None else attempt, statuses=from_statuses)
    written = condition(event, held)
    return conditional(lambda: item.update(actions=actions, condition=written))


def complete_sent(item: RequestItem) -> bool:
    """Take an ended request off the sweeper's index: its `complete` went out."""
    written = condition(Event.COMPLETE_SENT, Held(seq=int(item.seq)))
    copy = RequestItem(item.request_key)
    return conditional(
        lambda: copy.update(
            actions=[RequestItem.due_region.remove(), RequestItem.due_at.remove()],
            condition=written,
        )
    )


def schedule_retry(
    item: RequestItem, attempt: int, *, retry_after: int, seq: int, error: dict, now_ms: int
) -> bool:
    """PROCESSING -> RETRYING: the sweeper puts it back to PENDING at `retry_after`."""
    actions = [
        *moves(Event.RETRY),
        RequestItem.retry_after.set(retry_after),
        RequestItem.due_at.set(retry_after),
        RequestItem.seq.set(seq),
        RequestItem.error.set(error),
        RequestItem.lease_expires_at.remove(),
        RequestItem.updated_at.set(now_ms),
    ]
    written = condition(Event.RETRY, Held(attempt=attempt))
    return conditional(lambda: item.update(actions=actions, condition=written))


def defer_request(item: RequestItem, *, until: int, now_ms: int) -> bool:
    """PENDING -> RETRYING without a claim: the sweeper puts it back to PENDING at `until`.

    For a request whose action's circuit is open. False if it was claimed,
    cancelled or deferred by another worker first.
    """
    actions = [
        *moves(Event.DEFER),
        RequestItem.retry_after.set(until),
        RequestItem.due_region.set(item.origin_region),
        RequestItem.due_at.set(until),
        RequestItem.updated_at.set(now_ms),
    ]
    written = condition(Event.DEFER, Held(attempt=int(item.attempt)))
    return conditional(lambda: item.update(actions=actions, condition=written))


def redrive_request(item: RequestItem, *, now_ms: int, next_due_at: int, seq: int) -> bool:
    """Put a due request back to PENDING (a MODIFY the stream filter picks up).

    `seq` is the last one its messages may have used; the next attempt goes on
    from there. Conditional on the request being unchanged since the sweeper
    read it.
    """
    actions = [
        *moves(Event.REDRIVE),
        RequestItem.seq.set(seq),
        RequestItem.due_at.set(next_due_at),
        RequestItem.lease_expires_at.remove(),
        RequestItem.retry_after.remove(),
        RequestItem.updated_at.set(now_ms),
    ]
    held = Held(attempt=int(item.attempt), due_at=_due_at(item), statuses=(item.status,))
    written = condition(Event.REDRIVE, held)
    return conditional(lambda: item.update(actions=actions, condition=written))


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
    actions = [
        *moves(Event.WAIT),
        RequestItem.wait_state.set(state),
        RequestItem.poll_interval_ms.set(poll_interval_ms),
        RequestItem.deadline_at.set(deadline_at),
        failures,
        RequestItem.due_region.set(poll_partition(item.origin_region)),
        RequestItem.due_at.set(poll_at),
        RequestItem.seq.set(seq),
        RequestItem.lease_expires_at.remove(),
        RequestItem.updated_at.set(now_ms),
    ]
    written = condition(Event.WAIT, Held(attempt=attempt, due_at=_due_at(item)))
    return conditional(lambda: item.update(actions=actions, condition=written))


def claim_poll(item: RequestItem, now_ms: int, lease_expires_at: int) -> bool:
    """Take a due WAITING request for one poll; False if another poller took it first.

    The claim moves `due_at` to the lease's end, so the request leaves the due
    set (no second poller sees it) and comes back if this poller dies.
    """
    actions = [
        *moves(Event.CLAIM_POLL),
        RequestItem.due_at.set(lease_expires_at),
        RequestItem.updated_at.set(now_ms),
    ]
    written = condition(Event.CLAIM_POLL, Held(attempt=int(item.attempt), due_at=_due_at(item)))
    return conditional(lambda: item.update(actions=actions, condition=written))


def request_cancel(item: RequestItem, now_ms: int) -> bool:
    """Ask the worker running a PROCESSING request to stop."""
    actions = [
        *moves(Event.ASK_CANCEL),
        RequestItem.cancel_requested.set(True),
        RequestItem.updated_at.set(now_ms),
    ]
    written = condition(Event.ASK_CANCEL, Held())
    return conditional(lambda: item.update(actions=actions, condition=written))


def _due_at(item: RequestItem) -> int | None:
    return None if item.due_at is None else int(item.due_at)
