"""The request lifecycle as one table, and the decisions made over it.

Each row says: a request in status `source`, on `event`, moves to `target`,
with a write that checks `guards` besides the status. The store turns the
rows of an event into the condition of its one conditional update
(`streamer.store.conditions`), so a write the table does not allow is refused
by DynamoDB, not by the caller's good intentions. A `source` of None is a
request that does not exist yet.

The decisions here (claim a stream record or skip it, what the sweeper does
with a due request, what an attempt's outcome writes next, when a retry or the
next poll comes) are pure: they read statuses and numbers and return values.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """A request's stored status (the values are the strings stored in DynamoDB)."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    RETRYING = "RETRYING"
    #: Handed to an external system; the poller checks it (`streamer.poller`).
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class Event(StrEnum):
    """What happens to a request; each is one conditional write."""

    #: The router stores a new request (async: PENDING, sync: PROCESSING).
    CREATE = "create"
    #: A sync request whose router died mid-run is started again under its id.
    TAKE_OVER = "take_over"
    #: A processor takes a PENDING request for its next attempt.
    CLAIM = "claim"
    #: A running attempt (or a poll) persists its progress and checkpoint.
    REPORT = "report"
    #: A client asks the worker running the request to stop.
    ASK_CANCEL = "ask_cancel"
    #: The attempt failed temporarily; the sweeper re-drives it after a backoff.
    RETRY = "retry"
    #: The action's circuit is open: a PENDING request waits, unclaimed, until the
    #: sweeper re-drives it (`streamer.circuit`); it uses none of its attempts.
    DEFER = "defer"
    #: The handler handed the work to an external system, polled later.
    WAIT = "wait"
    #: A poller takes a due WAITING request for one poll.
    CLAIM_POLL = "claim_poll"
    #: The sweeper found a running request whose lease has not ended: it is due
    #: again at the lease's end (a claim keeps the pickup time while the lease
    #: ends later, so that the due index is not written on every claim).
    POSTPONE = "postpone"
    #: The sweeper puts a request back to PENDING (lease, retry or pickup time passed).
    REDRIVE = "redrive"
    #: Another region takes over a stalled request of a stopped region (`streamer.regions`):
    #: its runner moves, its status stays (a due PENDING one is re-driven instead, in the
    #: same write). The write also bumps the request's epoch.
    MOVE = "move"
    COMPLETE = "complete"
    FAIL = "fail"
    CANCEL = "cancel"
    #: The `complete` of a request a poll ended went out: it leaves the sweeper's index.
    COMPLETE_SENT = "complete_sent"


class Guard(StrEnum):
    """What a write checks besides the status: the writer still holds what it read."""

    #: The request's `attempt` is the writer's (its claim or lease).
    SAME_ATTEMPT = "same_attempt"
    #: `due_at` is unchanged since the writer read it (no other claim or redrive moved it).
    SAME_DUE_AT = "same_due_at"
    #: No client asked the request to stop.
    NOT_CANCELLING = "not_cancelling"
    #: `seq` is unchanged: nothing was written since the stored `complete`.
    SAME_SEQ = "same_seq"
    #: A sync request last updated before its router's deadline.
    STALE_SYNC = "stale_sync"


TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


@dataclass(frozen=True)
class Transition:
    source: Status | None
    event: Event
    target: Status
    guards: frozenset[Guard] = frozenset()


def _rows(
    sources: tuple[Status | None, ...], event: Event, target: Status | None, *guards: Guard
) -> list[Transition]:
    """One row per source; a `target` of None keeps each source's status."""
    return [Transition(s, event, target or s, frozenset(guards)) for s in sources]  # type: ignore[arg-type]


PENDING = Status.PENDING
PROCESSING = Status.PROCESSING
RETRYING = Status.RETRYING
WAITING = Status.WAITING
COMPLETED = Status.COMPLETED
FAILED = Status.FAILED
CANCELLED = Status.CANCELLED
#: A row's target that keeps the status it comes from.
UNCHANGED = None
SAME_ATTEMPT, SAME_DUE_AT = Guard.SAME_ATTEMPT, Guard.SAME_DUE_AT

TRANSITIONS: tuple[Transition, ...] = (
    *_rows((None,), Event.CREATE, PENDING),
    *_rows((None,), Event.CREATE, PROCESSING),
    *_rows((PROCESSING,), Event.TAKE_OVER, PROCESSING, Guard.STALE_SYNC),
    *_rows((PENDING,), Event.CLAIM, PROCESSING, SAME_ATTEMPT),
    *_rows((PROCESSING, WAITING), Event.REPORT, UNCHANGED, SAME_ATTEMPT, Guard.NOT_CANCELLING),
    *_rows((PROCESSING,), Event.ASK_CANCEL, UNCHANGED),
    *_rows((PROCESSING,), Event.RETRY, RETRYING, SAME_ATTEMPT),
    *_rows((PENDING,), Event.DEFER, RETRYING, SAME_ATTEMPT),
    # From PROCESSING the attempt fences the writer (every claim moves it on);
    # from WAITING the poll's claim does, through `due_at`.
    *_rows((PROCESSING,), Event.WAIT, WAITING, SAME_ATTEMPT),
    *_rows((WAITING,), Event.WAIT, WAITING, SAME_ATTEMPT, SAME_DUE_AT),
    *_rows((WAITING,), Event.CLAIM_POLL, UNCHANGED, SAME_ATTEMPT, SAME_DUE_AT),
    *_rows((PENDING, PROCESSING, RETRYING), Event.REDRIVE, PENDING, SAME_ATTEMPT, SAME_DUE_AT),
    *_rows((PROCESSING,), Event.POSTPONE, UNCHANGED, SAME_ATTEMPT, SAME_DUE_AT),
    *_rows(
        (PENDING, PROCESSING, RETRYING, WAITING), Event.MOVE, UNCHANGED, SAME_ATTEMPT, SAME_DUE_AT
    ),
    *_rows((PROCESSING, WAITING), Event.COMPLETE, COMPLETED, SAME_ATTEMPT),
    *_rows((PROCESSING, WAITING), Event.FAIL, FAILED, SAME_ATTEMPT),
    *_rows((PENDING, PROCESSING, RETRYING, WAITING), Event.CANCEL, CANCELLED, SAME_ATTEMPT),
    *_rows((COMPLETED, FAILED, CANCELLED), Event.COMPLETE_SENT, UNCHANGED, Guard.SAME_SEQ),
)


def transition(status: str | None, event: Event) -> Transition | None:
    """The row for `event` on a request in `status` (None: it does not exist); None if refused."""
    return next((t for t in TRANSITIONS if t.source == status and t.event == event), None)


def rows(event: Event) -> tuple[Transition, ...]:
    return tuple(t for t in TRANSITIONS if t.event == event)


def sources(event: Event) -> frozenset[Status | None]:
    """The statuses `event` may be written on."""
    return frozenset(t.source for t in rows(event))


def target(event: Event) -> Status | None:
    """The status `event` writes, or None where it keeps the request's own."""
    targets = {t.target for t in rows(event)}
    if all(t.source == t.target for t in rows(event)):
        return None
    if len(targets) != 1:
        raise ValueError(f"{event} has several targets; ask `transition` with the source")
    return next(iter(targets))


def ending(status: str) -> Event:
    """The event that ends a request in `status` (COMPLETED, FAILED or CANCELLED)."""
    for event in (Event.COMPLETE, Event.FAIL, Event.CANCEL):
        if target(event) == status:
            return event
    raise ValueError(f"{status!r} is not a status a request ends in")


# Decisions


def claims(status: str | None) -> bool:
    """Whether a stream record whose new image has `status` is one to claim and run."""
    return status is not None and transition(status, Event.CLAIM) is not None


class SweepAction(StrEnum):
    """What the sweeper does with a request found in its due index."""

    REDRIVE = "redrive"
    #: A running request whose lease has not ended: due again at the lease's end.
    POSTPONE = "postpone"
    TIME_OUT = "time_out"
    CANCEL = "cancel"
    RESEND = "resend"
    SKIP = "skip"


def sweep_action(
    status: str,
    *,
    due_at: int | None,
    now: int,
    attempt: int,
    max_attempts: int,
    cancel_requested: bool,
    lease_expires_at: int | None = None,
) -> SweepAction:
    """The sweeper's decision for a request its due index listed.

    A PROCESSING request is due at its pickup time or its lease's end,
    whichever its claim left first (`claim_due_at`): while the lease lasts its
    worker is alive, and it is postponed to the lease's end; after, the worker
    is dead.
    Asked to stop meanwhile, it ends CANCELLED rather than running again; out
    of attempts, it ends FAILED (TIMEOUT). An ended one is due only when its
    `complete` may not have gone out.
    """
    if due_at is None or due_at > now:
        # Not due: nothing to do before `due_at`.
        return SweepAction.SKIP
    if transition(status, Event.COMPLETE_SENT):
        return SweepAction.RESEND
    if status == Status.PROCESSING and lease_expires_at is not None and lease_expires_at > now:
        return SweepAction.POSTPONE
    if status == Status.PROCESSING and cancel_requested:
        return SweepAction.CANCEL
    if status == Status.PROCESSING and attempt >= max_attempts:
        return SweepAction.TIME_OUT
    if transition(status, Event.REDRIVE):
        return SweepAction.REDRIVE
    return SweepAction.SKIP


def claim_due_at(due_at: int | None, lease_expires_at: int) -> int:
    """When a claimed request is next due for the sweeper: its lease's end, unless the
    time it is already due at (its pickup time) comes first.

    Keeping the pickup time saves the claim a write to the due index (a moved
    `due_at` is a delete and a put there); a run still going then is postponed
    once by the sweeper (`SweepAction.POSTPONE`).
    """
    return lease_expires_at if due_at is None else min(due_at, lease_expires_at)


#: Not a stored status: an attempt's outcome when it failed and may be run again.
RETRY = "RETRY"


def after_attempt(outcome: str, status: str, *, attempt: int, max_attempts: int) -> Event:
    """What an attempt (or a poll) of a request in `status` writes for its `outcome`.

    `outcome` is a status the handler's run ended with (COMPLETED, FAILED,
    CANCELLED, WAITING) or RETRY. A poll that failed temporarily goes on
    waiting (its deadline ends it); an attempt that did is retried while it
    has attempts left, and fails after.
    """
    if outcome == Status.WAITING or (outcome == RETRY and status == Status.WAITING):
        return Event.WAIT
    if outcome == RETRY:
        return Event.RETRY if attempt < max_attempts else Event.FAIL
    return ending(outcome)


#: Backoff of handler retries: base * 2^(attempt-1), capped, with full jitter.
RETRY_BASE_MS = 1_000
RETRY_CAP_MS = 60_000
#: Longest pause between polls of a job whose external system keeps failing.
POLL_BACKOFF_CAP_MS = 300_000


def retry_delay_ms(attempt: int, rng: Callable[[], float] = random.random) -> int:
    """Exponential backoff with full jitter for the retry after `attempt`."""
    ceiling = min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** max(0, attempt - 1))
    return int(ceiling * rng())


def poll_backoff_ms(
    interval_ms: int, failures: int, rng: Callable[[], float] = random.random
) -> int:
    """The pause before the next poll after `failures` failed polls in a row.

    The job's own interval doubled per failure, capped (never below the
    interval), with equal jitter so jobs of one outage do not all come back at once.
    """
    ceiling = max(interval_ms, min(POLL_BACKOFF_CAP_MS, interval_ms * 2 ** max(0, failures - 1)))
    return max(interval_ms, int(ceiling * (0.5 + rng() / 2)))
