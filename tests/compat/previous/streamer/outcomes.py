"""What an attempt's outcome writes: the request waits, is retried, or ends.

`streamer.transitions.after_attempt` decides which; this module makes the
write and sends what the request's audience must see. Every write is
conditional on the worker still holding the request (its attempt, and for a
poll the `due_at` its claim set): a worker that lost it drops its outcome.
"""

from __future__ import annotations

import logging

from streamer import lifecycle, metric_names, metrics, store, transitions
from streamer.audience import Audience
from streamer.execution import Outcome
from streamer.models import PROCESSING, WAITING, RequestItem
from streamer.protocol import complete_message, now_ms, progress_message
from streamer.transitions import Event, after_attempt

log = logging.getLogger(__name__)


def record_outcome(
    item: RequestItem, attempt: int, outcome: Outcome, last_seq: int, audience: Audience
) -> None:
    """Write what `outcome` of `attempt` (or of a poll) leads to.

    `last_seq` is the `seq` of the last message the attempt sent.
    """
    now = now_ms()
    event = after_attempt(
        outcome.status, item.status, attempt=attempt, max_attempts=int(item.max_attempts)
    )
    if event is Event.WAIT:
        _wait(item, attempt, outcome, last_seq, now)
    elif event is Event.RETRY:
        _retry(item, attempt, outcome, last_seq + 1, audience, now)
    else:
        _end(item, attempt, event, outcome, last_seq + 1, audience, now)


def _wait(item: RequestItem, attempt: int, outcome: Outcome, last_seq: int, now: int) -> None:
    """Store the request WAITING until its next poll.

    A poll that failed temporarily keeps its state and is tried again, later
    after each failure in a row (`transitions.poll_backoff_ms`): only the
    deadline ends a waiting request early.
    """
    waiting = outcome.waiting
    if waiting is None:
        state = dict(item.wait_state or {})
        interval_ms = int(item.poll_interval_ms or transitions.RETRY_BASE_MS)
        failures = int(item.poll_failures or 0) + 1
        pause_ms = transitions.poll_backoff_ms(interval_ms, failures)
    else:
        state = waiting.state
        interval_ms = round(waiting.poll_after_s * 1000)
        failures, pause_ms = 0, interval_ms
    if item.status == WAITING:
        deadline_at = int(item.deadline_at)
    else:
        deadline_at = now + round((waiting.deadline_s if waiting else 0) * 1000)
    if not store.wait_request(
        item,
        attempt,
        state=state,
        # Never past the deadline: the poller ends the job TIMEOUT when it comes due.
        poll_at=min(now + pause_ms, deadline_at),
        poll_interval_ms=interval_ms,
        deadline_at=deadline_at,
        seq=last_seq,
        now_ms=now,
        poll_failures=failures,
    ):
        log.warning("request changed hands while it was polled; this poll is dropped")


def _retry(
    item: RequestItem, attempt: int, outcome: Outcome, seq: int, audience: Audience, now: int
) -> None:
    """Store the request RETRYING (the sweeper re-drives it) and tell its audience when."""
    retry_after = now + transitions.retry_delay_ms(attempt)
    if store.schedule_retry(
        item, attempt, retry_after=retry_after, seq=seq, error=outcome.error or {}, now_ms=now
    ):
        metrics.count(metric_names.RETRIES, action=item.action)
        audience.send(
            progress_message(
                item.request_id,
                seq,
                float(item.progress),
                f"attempt {attempt} failed; retrying",
                {"retry_after": retry_after},
                now,
            )
        )


def _end(
    item: RequestItem,
    attempt: int,
    event: Event,
    outcome: Outcome,
    seq: int,
    audience: Audience,
    now: int,
) -> None:
    """Store the final status, send the `complete`, then take the request off the sweeper's index.

    Should this worker die before the `complete` is out, the request is still
    in the index at `deliver_by` and the sweeper sends it.
    """
    status = transitions.target(event)
    final = {"result": outcome.result} if outcome.error is None else {"error": outcome.error}
    # A poll's claim, not a lease, bounds how long the complete may take.
    deliver_by = item.lease_expires_at if item.status == PROCESSING else item.due_at
    if not store.finish_request(
        item,
        from_statuses=(item.status,),
        attempt=attempt,
        status=status,
        seq=seq,
        now_ms=now,
        progress=100.0 if outcome.error is None else None,
        deliver_by=int(deliver_by),
        **final,
    ):
        log.warning("request changed hands before it ended; its outcome is dropped")
        return
    metrics.count(metric_names.OUTCOMES, action=item.action, status=status)
    total_ms = now - int(item.created_at)
    metrics.duration(metric_names.TOTAL_DURATION, total_ms, action=item.action)
    metrics.duration(metric_names.ASYNC_TOTAL_DURATION, total_ms)
    audience.send(
        complete_message(item.request_id, seq, status, timestamp=now, **final), refresh=True
    )
    # Before the request leaves the sweeper's index: should this worker die
    # here, the sweeper sends the complete and the event again.
    lifecycle.request_ended(item, now)
    try:
        store.complete_sent(item)
    except store.StoreUnavailable:
        log.warning("complete sent but not recorded; the sweeper will send it again")
