"""The sweeper: re-drives requests whose lease, retry time or pickup time passed.

Runs on a schedule. It reads the sparse `by_due` index (PENDING, PROCESSING
and RETRYING requests, and those a poll ended until their `complete` is out),
on every shard (`streamer.keys`), and scans the per-user cap's sparse index
for the requests it alone watches (`keys.watched_by`: while the cap is on, a
request enters the due index only once something moves it on by a time);
it never scans the table. What it does with
each request is the lifecycle table's decision
(`streamer.transitions.sweep_action`). A PROCESSING request found
before its lease ended (a claim leaves it due at its pickup time, which saves
the claim a write to the index) is postponed to the lease's end. One whose
lease expired means its worker died or timed out: it goes back to PENDING, or
ends FAILED with TIMEOUT once it used all its attempts. The dead worker may
have sent messages it never recorded, so whatever is sent for the request
next skips past them (`last_seq_sent`). An ended request is due only if the
poller that ended it died between storing the outcome and sending the
`complete`: the sweeper sends it. (A processor's attempt takes its request off
the index as it ends it: a `complete` lost with that worker is sent when Lambda
delivers the failed batch again, `streamer.outcomes.resend_lost_complete`.)

In a deployment of several regions, each run also records its region's
heartbeat and takes over the stalled requests of regions whose heartbeat is
stale (`streamer.takeover`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamer import lifecycle, metric_names, metrics, store
from streamer.audience import Audience, end_request, stored_complete
from streamer.config import PICKUP_TIMEOUT_MS, Settings
from streamer.errors import ErrorCode, StreamerError
from streamer.keys import due_shard, shards_read
from streamer.models import CANCELLED, FAILED, PROCESSING, RequestItem
from streamer.progress import MAX_UNPERSISTED_MESSAGES
from streamer.regions import TakeoverSettings
from streamer.takeover import stale_regions, take_over
from streamer.transitions import SweepAction, sweep_action

log = logging.getLogger(__name__)

#: What a failed scan of the per-user cap's index is reported as (`SweepReport.failed`).
UNKEYED = "unkeyed"
#: The sweeper and the poller read one more shard each turn of this length (`keys.shards_read`):
#: their schedule's period, so each run reads another.
SWEEP_TURN_MS = 60_000


@dataclass
class SweepReport:
    redriven: list[str] = field(default_factory=list)
    #: Running within their lease: due again at its end.
    postponed: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    #: Taken over from a stopped region (`streamer.takeover`): ids.
    taken_over: list[str] = field(default_factory=list)
    #: Keys of the requests that could not be parsed or written this time.
    failed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "redriven": len(self.redriven),
            "postponed": len(self.postponed),
            "timed_out": len(self.timed_out),
            "cancelled": len(self.cancelled),
            "resent": len(self.resent),
            "taken_over": len(self.taken_over),
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
        lease_expires_at=None if item.lease_expires_at is None else int(item.lease_expires_at),
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


def sweep(
    region: str,
    delivery: Any,
    now: int,
    *,
    max_items: int = 500,
    shards: int = Settings.due_shards,
    regions: Sequence[str] = (),
    takeover: TakeoverSettings | None = None,
) -> SweepReport:
    """Act on every due request of `region`; one that fails is logged, counted, and left.

    With other `regions` and their `takeover` times, first record this region's
    heartbeat and take over the stalled requests of those whose heartbeat is
    stale (`streamer.takeover`).

    Reads every one of the due index's `shards` (and, in turn, one above them:
    `keys.shards_read`). Each item of the index is parsed and acted on by
    itself, so an item that cannot be parsed or updated stops only itself. It
    stays in the index and comes up again at the next sweep.
    """
    report = SweepReport()
    takes_over = takeover is not None and len(regions) > 1
    if takes_over:
        # First the heartbeat: a region whose own sweep fails or runs long still
        # shows it is alive, and is not taken over while its workers run.
        _beat(region, now, report)
    read = shards_read(shards, now // SWEEP_TURN_MS)
    _sweep_all(
        store.due_items(region, now, limit=max_items, shards=read), delivery, now, report, shards
    )
    # The requests the per-user cap's index alone watches (`keys.watched_by`): one whose
    # time passed is keyed in the due index by the write that moves it on.
    try:
        unkeyed = store.unkeyed_due_items(region, now, limit=max_items, segments=shards)
    except Exception as error:
        _failed(report, UNKEYED, error)
    else:
        _sweep_all(unkeyed, delivery, now, report, shards)
    if takes_over:
        # Then the stopped regions' requests: their writes cross regions and may
        # wait on a decider that does not answer, after this region's own work.
        try:
            _take_over(region, regions, delivery, now, report, takeover, shards, max_items)
        except Exception as error:
            _failed(report, "takeover", error)
    if any(report.to_dict().values()):
        log.info("sweep", extra={"fields": report.to_dict()})
    redrives = len(report.redriven) + len(report.timed_out) + len(report.cancelled)
    metrics.count(metric_names.SWEEPER_REDRIVES, redrives)
    metrics.count(metric_names.SWEEPER_FAILURES, len(report.failed))
    return report


def _sweep_all(
    found: list[RequestItem | store.Unreadable],
    delivery: Any,
    now: int,
    report: SweepReport,
    shards: int,
) -> None:
    for due in found:
        if isinstance(due, store.Unreadable):
            _failed(report, due.request_key, due.error)
            continue
        try:
            _sweep_one(due, delivery, now, report, shards)
        except Exception as error:
            # Whatever one request does wrong, the others are still swept.
            _failed(report, due.request_key, error)


def _take_over(
    region: str,
    regions: Sequence[str],
    delivery: Any,
    now: int,
    report: SweepReport,
    settings: TakeoverSettings,
    shards: int,
    max_items: int,
) -> None:
    def redrive_seq(item: RequestItem) -> int | None:
        redrives = sweep_decision(item, now) is SweepAction.REDRIVE
        return last_seq_sent(item) if redrives else None

    for stopped in stale_regions(region, regions, now, settings):
        taken = take_over(
            region,
            stopped,
            now,
            settings,
            redrive_seq=redrive_seq,
            shards=shards,
            max_items=max_items,
            turn=now // SWEEP_TURN_MS,
        )
        report.taken_over += taken.redriven + [item.request_id for item in taken.moved]
        for key, error in taken.failed:
            _failed(report, key, error)
        for item in taken.moved:
            try:
                _sweep_one(item, delivery, now, report, shards)
            except Exception as error:
                _failed(report, item.request_key, error)


def _beat(region: str, now: int, report: SweepReport) -> None:
    try:
        store.beat(region, now)
    except Exception as error:
        _failed(report, "heartbeat", error)


def _failed(report: SweepReport, key: str, error: Exception) -> None:
    log.error(
        "sweep of one request failed",
        exc_info=error,
        extra={"fields": {"request_key": key}},
    )
    report.failed.append(key)


def _sweep_one(
    item: RequestItem, delivery: Any, now: int, report: SweepReport, shards: int
) -> None:
    decision = sweep_decision(item, now)
    last_seq = last_seq_sent(item)
    if decision is SweepAction.REDRIVE:
        # Keyed again under today's shard count: one read from a dropped shard moves here.
        shard = due_shard(item.request_key, shards)
        if store.redrive_request(
            item, now_ms=now, next_due_at=now + PICKUP_TIMEOUT_MS, seq=last_seq, shard=shard
        ):
            report.redriven.append(item.request_id)
    elif decision is SweepAction.POSTPONE:
        shard = due_shard(item.request_key, shards)
        if store.postpone_request(item, until=int(item.lease_expires_at), shard=shard):
            report.postponed.append(item.request_id)
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
        # The poller died after storing the outcome: its complete and its
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


__all__ = ["SWEEP_TURN_MS", "SweepReport", "last_seq_sent", "sweep", "sweep_decision"]
