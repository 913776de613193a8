"""One attempt of a claimed request (or one poll of a WAITING one), start to recorded outcome.

The attempt builds the handler's `Request` and a `ProgressReporter` wired to
the request's audience and to the store, runs the handler, and records the
outcome (`streamer.outcomes`). It runs in the thread that claimed the request;
the reporter's own thread sends and persists progress meanwhile (see
`streamer.processor` for what the two share).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from streamer import metric_names, metrics, store
from streamer.audience import Audience
from streamer.config import Settings
from streamer.errors import ErrorCode, StreamerError
from streamer.execution import Outcome
from streamer.handlers import App, Handler, Request
from streamer.logs import Timer
from streamer.models import CANCELLED, FAILED, WAITING, RequestItem
from streamer.outcomes import record_outcome
from streamer.progress import ProgressReporter, Snapshot
from streamer.protocol import now_ms

log = logging.getLogger("streamer.processor")

#: Runs the handler's `process` or `poll`; never raises (`streamer.execution`).
HandlerCall = Callable[[Handler, Request, ProgressReporter], Outcome]


def run_attempt(
    item: RequestItem, call: HandlerCall, *, settings: Settings, app: App, delivery: Any
) -> Outcome:
    """Run `call` for the request `item` holds (claimed by this worker), record its outcome
    and return it."""
    timer = Timer()
    attempt = int(item.attempt)
    audience = Audience(item, delivery)
    handler = app.get(item.action)
    if handler is None:
        error = StreamerError(ErrorCode.INVALID_ACTION, f"no handler for action {item.action!r}")
        outcome = Outcome(FAILED, error=error.to_dict())
        record_outcome(item, attempt, outcome, int(item.seq), audience)
        return outcome
    reporter = _reporter(item, attempt, audience, settings)
    log.info("request started", extra={"fields": {"attempt": attempt, "status": item.status}})
    outcome = call(handler, request_of(item), reporter)
    metrics.duration(metric_names.RUN_DURATION, timer.elapsed_ms, action=item.action)
    last_seq = reporter.close()
    metrics.count(metric_names.PROGRESS_REPORTS, reporter.reports, action=item.action)
    metrics.count(metric_names.PROGRESS_SENT, last_seq - int(item.seq), action=item.action)
    if reporter.cancelled and outcome.status != CANCELLED:
        # Cancelled while the handler was finishing: the cancel wins.
        error = StreamerError(ErrorCode.CANCELLED, "the request was cancelled")
        outcome = Outcome(CANCELLED, error=error.to_dict())
    record_outcome(item, attempt, outcome, last_seq, audience)
    log.info(
        "request ended" if outcome.status != WAITING else "request waiting",
        extra={"fields": {"status": outcome.status, "duration_ms": timer.elapsed_ms}},
    )
    return outcome


def request_of(item: RequestItem) -> Request:
    """What the handler is given of a stored request."""
    return Request(
        request_id=item.request_id,
        action=item.action,
        payload=dict(item.payload or {}),
        user_id=item.user_id,
        tenant_id=item.tenant_id,
        metadata=dict(item.metadata or {}),
        attempt=int(item.attempt),
        checkpoint=item.checkpoint,
    )


def _reporter(
    item: RequestItem, attempt: int, audience: Audience, settings: Settings
) -> ProgressReporter:
    """A reporter that sends to the audience and persists under this attempt's claim."""
    # The status the attempt runs in: persisting is refused once the request leaves it.
    status = item.status

    def persist(snap: Snapshot) -> bool:
        return store.save_progress(
            item,
            attempt,
            percentage=snap.percentage,
            message=snap.message,
            seq=snap.seq,
            checkpoint=snap.checkpoint,
            now_ms=now_ms(),
            status=status,
        )

    return ProgressReporter(
        item.request_id,
        publish=audience.send,
        persist=persist,
        is_cancelled=lambda: store.cancel_requested(item.owner, item.request_id),
        stop_asked=lambda: audience.stop_asked(within_s=settings.progress_flush_ms / 1000),
        flush_interval_s=settings.progress_flush_ms / 1000,
        immediate_percent=settings.progress_immediate_percent,
        persist_interval_s=settings.progress_persist_ms / 1000,
        start_seq=int(item.seq),
    )
