"""The writes that move a request through its lifecycle, one conditional update each.

Which status a write goes from and to, and what else it checks, is the
lifecycle table's (`streamer.transitions`, turned into conditions by
`streamer.store.conditions`); each function here adds what the write stores.
False means the condition failed: another writer won, or the request moved on.

Each write goes to the request's decider (`streamer.models.decider_of`), the
one table endpoint whose conditions decide the request in every region, and
carries the epoch its writer read (`Held.epoch`): a region that lost the
request to a takeover has its writes refused there.
"""

from __future__ import annotations

from typing import Any

from streamer.keys import poll_partition, sweep_partition
from streamer.models import PROCESSING, WAITING, RequestItem, decider_of, requests_in
from streamer.regions import Fence
from streamer.store.conditions import Held, condition, moves
from streamer.store.errors import conditional
from streamer.transitions import Event, claim_due_at, ending


def claim_request(
    item: RequestItem, now_ms: int, lease_expires_at: int, shard: int | None = None
) -> bool:
    """PENDING -> PROCESSING for the attempt after the one `item` shows.

    On success `item` holds the new state. False if another worker claimed it,
    it was cancelled, or it is not PENDING any more. The request is due next at
    `transitions.claim_due_at`; where that is the time it is due at already,
    and `shard` (today's shard of the request; default: its own) is the one it
    is keyed under, the claim leaves the due index alone. Otherwise it keys the
    request under `shard`: after the shard count was lowered, the retry or the
    wait that follows is due where the sweeper and the poller read every run.
    A request the per-user cap's index watches alone (`keys.watched_by`) is
    not keyed by its claim: it stays in that index, due at the same time
    (`shard` is stored for the write that keys it).
    """
    shard = item.shard if shard is None else shard
    due_at = claim_due_at(_due_at(item), lease_expires_at)
    actions = [
        *moves(Event.CLAIM),
        RequestItem.attempt.add(1),
        RequestItem.lease_expires_at.set(lease_expires_at),
        RequestItem.updated_at.set(now_ms),
    ]
    if item.watched_by_cap:
        # The cap's index finds it if it stalls (`keys.watched_by`): it stays there alone,
        # its time moved only where the lease ends before it (a projected attribute: 1 WRU),
        # its shard (not projected) today's, for the write that keys it later.
        if due_at != _due_at(item):
            actions += [RequestItem.due_at.set(due_at), RequestItem.cap_due_at.set(due_at)]
        if shard != item.shard:
            actions.append(RequestItem.due_shard.set(shard))
    elif due_at != _due_at(item) or item.due_region is None or shard != item.shard:
        actions += [*_keyed(item, shard), RequestItem.due_at.set(due_at)]
    written = condition(Event.CLAIM, Held(epoch=item.fence_epoch, attempt=int(item.attempt)))
    return _write(item, actions, written)


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
    written = condition(
        Event.REPORT, Held(epoch=item.fence_epoch, attempt=attempt, statuses=(status,))
    )
    return _write(item, actions, written, into_item=False)


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
    the one `item` shows). The request leaves the sweeper's index, unless
    `deliver_by` is given (a poll's end: no stream record comes again for a
    poller that died): then it stays there until that time, unless
    `complete_sent` takes it off first, and a `complete` lost with its poller
    is sent by the sweeper. On success `item` holds the final state.
    """
    event = ending(status)
    actions = [
        *moves(event),
        RequestItem.seq.set(seq),
        RequestItem.updated_at.set(now_ms),
        RequestItem.lease_expires_at.remove(),
        RequestItem.active_owner.remove(),
        *_unwatched(item),
    ]
    if deliver_by is None:
        actions += [RequestItem.due_region.remove(), RequestItem.due_at.remove()]
    else:
        actions += [
            RequestItem.due_region.set(sweep_partition(item.origin_region, item.shard)),
            RequestItem.due_at.set(deliver_by),
        ]
    if result is not None:
        actions.append(RequestItem.result.set(result))
    if error is not None:
        actions.append(RequestItem.error.set(error))
    if progress is not None:
        actions.append(RequestItem.progress.set(progress))
    held = Held(
        epoch=item.fence_epoch,
        attempt=int(item.attempt) if attempt is None else attempt,
        statuses=from_statuses,
    )
    written = condition(event, held)
    return _write(item, actions, written)


def complete_sent(item: RequestItem) -> bool:
    """Take an ended request off the sweeper's index: its `complete` went out."""
    written = condition(Event.COMPLETE_SENT, Held(epoch=item.fence_epoch, seq=int(item.seq)))
    actions = [RequestItem.due_region.remove(), RequestItem.due_at.remove()]
    return _write(item, actions, written, into_item=False)


def schedule_retry(
    item: RequestItem, attempt: int, *, retry_after: int, seq: int, error: dict, now_ms: int
) -> bool:
    """PROCESSING -> RETRYING: the sweeper puts it back to PENDING at `retry_after`.

    It stays in the index that watches it (`keys.watched_by`), due at that time.
    """
    watched = [RequestItem.cap_due_at.set(retry_after)] if item.watched_by_cap else []
    actions = [
        *moves(Event.RETRY),
        RequestItem.retry_after.set(retry_after),
        RequestItem.due_at.set(retry_after),
        *watched,
        RequestItem.seq.set(seq),
        RequestItem.error.set(error),
        RequestItem.lease_expires_at.remove(),
        RequestItem.updated_at.set(now_ms),
    ]
    written = condition(Event.RETRY, Held(epoch=item.fence_epoch, attempt=attempt))
    return _write(item, actions, written)


def defer_request(item: RequestItem, *, until: int, now_ms: int, shard: int | None = None) -> bool:
    """PENDING -> RETRYING without a claim: the sweeper puts it back to PENDING at `until`.

    For a request whose action's circuit is open. False if it was claimed,
    cancelled or deferred by another worker first. Keyed under `shard` (today's
    shard of the request; default: its own), as `claim_request` does.
    """
    actions = [
        *moves(Event.DEFER),
        RequestItem.retry_after.set(until),
        *_keyed(item, item.shard if shard is None else shard),
        RequestItem.due_at.set(until),
        RequestItem.updated_at.set(now_ms),
    ]
    written = condition(Event.DEFER, Held(epoch=item.fence_epoch, attempt=int(item.attempt)))
    return _write(item, actions, written)


def redrive_request(
    item: RequestItem, *, now_ms: int, next_due_at: int, seq: int, shard: int | None = None
) -> bool:
    """Put a due request back to PENDING (a MODIFY the stream filter picks up).

    `seq` is the last one its messages may have used; the next attempt goes on
    from there. `shard` (default: the request's own) re-keys it in the due
    index, as after the shard count changed. Conditional on the request being
    unchanged since the sweeper read it.
    """
    shard = item.shard if shard is None else shard
    actions = _redriven(now_ms, next_due_at=next_due_at, seq=seq)
    actions.append(RequestItem.due_shard.set(shard))
    actions.append(RequestItem.due_region.set(sweep_partition(item.origin_region, shard)))
    actions += _unwatched(item)
    written = condition(Event.REDRIVE, _unchanged(item, item.fence_epoch))
    return _write(item, actions, written)


def take_over_request(
    item: RequestItem,
    fence: Fence,
    *,
    runner: str,
    shard: int,
    now_ms: int,
    redrive_seq: int | None,
    next_due_at: int,
) -> bool:
    """Another region takes over a stalled request: one write at its decider.

    The request's runner (`origin_region`) becomes `runner`, keyed under
    `runner`'s due partition (the poller's for a WAITING one), and its epoch
    moves from `fence.expected` to `fence.epoch`, so the old runner's writes
    are refused from now on. With `redrive_seq`, the same write re-drives it to
    PENDING as `redrive_request` does: `runner`'s processor claims it from its
    own stream and runs it from its checkpoint. Conditional on the request
    being as the taker read it (status, attempt, due time, epoch). On success
    `item` holds the new state.
    """
    partition = poll_partition if item.status == WAITING else sweep_partition
    actions = [
        RequestItem.origin_region.set(runner),
        RequestItem.epoch.set(fence.epoch),
        RequestItem.due_shard.set(shard),
        RequestItem.due_region.set(partition(runner, shard)),
        *_unwatched(item),
    ]
    event = Event.MOVE
    if redrive_seq is not None:
        event = Event.REDRIVE
        actions += _redriven(now_ms, next_due_at=next_due_at, seq=redrive_seq)
    written = condition(event, _unchanged(item, fence.expected))
    return _write(item, actions, written)


def _redriven(now_ms: int, *, next_due_at: int, seq: int) -> list[Any]:
    """What a redrive writes besides the request's due partition."""
    return [
        *moves(Event.REDRIVE),
        RequestItem.seq.set(seq),
        RequestItem.due_at.set(next_due_at),
        RequestItem.lease_expires_at.remove(),
        RequestItem.retry_after.remove(),
        RequestItem.updated_at.set(now_ms),
    ]


def _unchanged(item: RequestItem, epoch: int) -> Held:
    """The request as the sweeper read it: same status, attempt, due time and epoch."""
    return Held(
        epoch=epoch,
        attempt=int(item.attempt),
        due_at=_due_at(item),
        statuses=(item.status,),
    )


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
        RequestItem.due_region.set(poll_partition(item.origin_region, item.shard)),
        *_unwatched(item),
        RequestItem.due_at.set(poll_at),
        RequestItem.seq.set(seq),
        RequestItem.lease_expires_at.remove(),
        RequestItem.updated_at.set(now_ms),
    ]
    written = condition(
        Event.WAIT, Held(epoch=item.fence_epoch, attempt=attempt, due_at=_due_at(item))
    )
    return _write(item, actions, written)


def claim_poll(
    item: RequestItem, now_ms: int, lease_expires_at: int, shard: int | None = None
) -> bool:
    """Take a due WAITING request for one poll; False if another poller took it first.

    The claim moves `due_at` to the lease's end, so the request leaves the due
    set (no second poller sees it) and comes back if this poller dies.
    `shard` (default: the request's own) re-keys it, as `redrive_request` does.
    """
    shard = item.shard if shard is None else shard
    actions = [
        *moves(Event.CLAIM_POLL),
        RequestItem.due_shard.set(shard),
        RequestItem.due_region.set(poll_partition(item.origin_region, shard)),
        *_unwatched(item),
        RequestItem.due_at.set(lease_expires_at),
        RequestItem.updated_at.set(now_ms),
    ]
    written = condition(
        Event.CLAIM_POLL,
        Held(epoch=item.fence_epoch, attempt=int(item.attempt), due_at=_due_at(item)),
    )
    return _write(item, actions, written)


def postpone_request(item: RequestItem, *, until: int, shard: int | None = None) -> bool:
    """Make a running request due at `until` (its lease's end) instead of now.

    Conditional on the request being as the sweeper read it: still PROCESSING,
    at the same attempt and `due_at`. Keyed under `shard` (today's shard of the
    request; default: its own): the new `due_at` moves it in the index anyway.
    """
    shard = item.shard if shard is None else shard
    actions = [*moves(Event.POSTPONE), *_keyed(item, shard), RequestItem.due_at.set(until)]
    written = condition(
        Event.POSTPONE,
        Held(epoch=item.fence_epoch, attempt=int(item.attempt), due_at=_due_at(item)),
    )
    return _write(item, actions, written)


def request_cancel(item: RequestItem, now_ms: int) -> bool:
    """Ask the worker running a PROCESSING request to stop."""
    actions = [
        *moves(Event.ASK_CANCEL),
        RequestItem.cancel_requested.set(True),
        RequestItem.updated_at.set(now_ms),
    ]
    written = condition(Event.ASK_CANCEL, Held(epoch=item.fence_epoch))
    return _write(item, actions, written)


def _write(item: RequestItem, actions: list[Any], written: Any, *, into_item: bool = True) -> bool:
    """One conditional update of the request at its decider's table; on success, `into_item`
    makes `item` hold the state written (UpdateItem's ALL_NEW, as PynamoDB's `update` does).

    An item read in the decider's region is written as it is: with one region,
    every write, the calls made before regions existed.
    """
    model = requests_in(decider_of(item.owner))
    target = item if into_item and type(item) is model else model(item.request_key)
    if not conditional(lambda: target.update(actions=actions, condition=written)):
        return False
    if into_item and target is not item:
        item.attribute_values = target.attribute_values
    return True


def _keyed(item: RequestItem, shard: int) -> list[Any]:
    """Key `item` in the sweeper's partition of its runner's `shard` of the due index."""
    return [
        RequestItem.due_shard.set(shard),
        RequestItem.due_region.set(sweep_partition(item.origin_region, shard)),
        *_unwatched(item),
    ]


def _unwatched(item: RequestItem) -> list[Any]:
    """What a write that keys `item` in the due index (or ends it) removes: `cap_due_at`,
    the due time the cap's index read while it alone watched the request
    (`keys.watched_by`). One write to that index, once; none for a request without it."""
    return [RequestItem.cap_due_at.remove()] if item.cap_due_at is not None else []


def _due_at(item: RequestItem) -> int | None:
    return None if item.due_at is None else int(item.due_at)
