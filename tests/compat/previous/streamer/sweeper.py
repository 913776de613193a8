"""The sweeper: re-drives requests whose lease, retry time or pickup time passed.

Runs on a schedule. It reads the sparse `by_due` index (PENDING, PROCESSING
and RETRYING requests, and ended ones until their `complete` is out), never
scans the table; what it does with each request is the lifecycle table's
decision (`streamer.transitions.sweep_action`). A PROCESSING request whose
lease expired means its worker died or timed out: it goes back to PENDING, or
ends FAILED with TIMEOUT once it used all its attempts. The dead worker may
have sent messages it never recorded, so whatever is sent for the request
next skips past them (`last_seq_sent`). An ended request is due only if its
worker died between storing the outcome and sending the `complete`: the
sweeper sends it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from streamer import lifecycle, metric_names, metrics, store
from streamer.audience import Audience, end_request, stored_complete
from streamer.config import PICKUP_TIMEOUT_MS
from streamer.errors import ErrorCode, StreamerError
from streamer.models import CANCELLED, FAILED, PROCESSING, RequestItem
from streamer.progress import MAX_UNPERSISTED_MESSAGES
from streamer.transitions import SweepAction, sweep_action

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    redriven: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    #: Keys of the requests that could not be parsed or written this time.
    failed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "redriven": len(self.redriven),
            "timed_out": len(self.timed_out),
            "cancelled": len(self.cancelled),
            "resent": len(self.resent),
            "failed": len(self.failed),
        }


def sweep_decision(item: RequestItem, now: int) -> SweepAction:
    """What to do at `now` with a request the due index listed."""
    return sweep_action(
        item.status,
        due_at=None if item.due_at is None else int(item.due_at),
        now=now,
        attempt=int(item.attempt),
        max_attempts=int(item.max_attempts),
        cancel_requested=bool(item.cancel_requested),
    )


def last_seq_sent(item: RequestItem) -> int:
    """The highest `seq` a message of this due request may already have carried.

    A PROCESSING request is due only once its worker's lease expired; that
    worker may have sent up to `MAX_UNPERSISTED_MESSAGES` progress messages
    past the `seq` it persisted.
    """
    if item.status == PROCESSING:
        return int(item.seq) + MAX_UNPERSISTED_MESSAGES
    return int(item.seq)


def sweep(region: str, delivery: Any, now: int, *, max_items: int = 500) -> SweepReport:
    """Act on every due request of `region`; one that fails is logged, counted, and left.

    Each item of the index is parsed and acted on by itself, so an item that
    cannot be parsed or updated stops only itself. It stays in the index and
    comes up again at the next sweep.
    """
    report = SweepReport()
    for due in store.due_items(region, now, limit=max_items):
        if isinstance(due, store.Unreadable):
            _failed(report, due.request_key, due.error)
            continue
        try:
            _sweep_one(due, delivery, now, report)
        except Exception as error:
            # Whatever one request does wrong, the others are still swept.
            _failed(report, due.request_key, error)
    if report.redriven or report.timed_out or report.cancelled or report.resent or report.failed:
        log.info("sweep", extra={"fields": report.to_dict()})
    redrives = len(report.redriven) + len(report.timed_out) + len(report.cancelled)
    metrics.count(metric_names.SWEEPER_REDRIVES, redrives)
    metrics.count(metric_names.SWEEPER_FAILURES, len(report.failed))
    return report


def _failed(report: SweepReport, key: str, error: Exception) -> None:
    log.error(
        "sweep of one request failed",
        exc_info=error,
        extra={"fields": {"request_key": key}},
    )
    report.failed.append(key)


def _sweep_one(item: RequestItem, delivery: Any, now: int, report: SweepReport) -> None:
    decision = sweep_decision(item, now)
    last_seq = last_seq_sent(item)
    if decision is SweepAction.REDRIVE:
        if store.redrive_request(
            item, now_ms=now, next_due_at=now + PICKUP_TIMEOUT_MS, seq=last_seq
        ):
            report.redriven.append(item.request_id)
    elif decision is SweepAction.TIME_OUT:
        error = StreamerError(
            ErrorCode.TIMEOUT,
            f"the request did not finish in {int(item.attempt)} attempts",
            details={"attempts": int(item.attempt)},
        )
        if _end(item, FAILED, error, delivery, now, last_seq):
            report.timed_out.append(item.request_id)
    elif decision is SweepAction.CANCEL:
        error = StreamerError(ErrorCode.CANCELLED, "the request was cancelled")
        if _end(item, CANCELLED, error, delivery, now, last_seq):
            report.cancelled.append(item.request_id)
    elif decision is SweepAction.RESEND:
        # The worker died after storing the outcome: its complete and its
        # lifecycle event may both be lost (the client drops a repeat by seq).
        Audience(item, delivery).send(stored_complete(item), refresh=True)
        lifecycle.request_ended(item, int(item.updated_at))
        if store.complete_sent(item):
            report.resent.append(item.request_id)


def _end(
    item: RequestItem, status: str, error: StreamerError, delivery: Any, now: int, last_seq: int
) -> bool:
    """End a request whose worker died, from the status it was read in."""
    return end_request(
        item, status, error, delivery, from_statuses=(item.status,), now=now, last_seq=last_seq
    )


__all__ = ["SweepReport", "last_seq_sent", "sweep", "sweep_decision"]
