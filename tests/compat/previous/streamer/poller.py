"""The poller: checks the external work of WAITING requests whose poll time came.

Runs on a schedule (EventBridge on AWS, a timer locally). It reads the
region's WAITING partition of the sparse `by_due` index, never scans the
table. Each due request is claimed with one conditional update before it is
polled, so two pollers running side by side never poll the same job; a
poller that dies leaves its claims to expire and be taken again. Polls run
in parallel, at most `batch_size` at a time. A request past its deadline is
not polled: it ends FAILED with TIMEOUT.
"""

from __future__ import annotations

import concurrent.futures
import logging
from dataclasses import dataclass, field
from typing import Any

from streamer import metric_names, metrics, store
from streamer.audience import end_request
from streamer.config import Settings
from streamer.errors import ErrorCode, StreamerError
from streamer.logs import copy_context
from streamer.models import WAITING, RequestItem
from streamer.processor import Processor

log = logging.getLogger(__name__)

#: Polls run at once by default (the seed system's "20 at a time";
#: `STREAMER_POLLER_BATCH_SIZE`).
BATCH_SIZE = Settings.poller_batch_size


@dataclass
class PollReport:
    polled: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "polled": len(self.polled),
            "timed_out": len(self.timed_out),
            "skipped": len(self.skipped),
        }


def poll_decision(item: RequestItem, now: int) -> str:
    """What to do with a due WAITING request: "poll", "time_out" or "skip"."""
    if item.status != WAITING:
        return "skip"
    if item.deadline_at is not None and now >= int(item.deadline_at):
        return "time_out"
    return "poll"


def poll_due(
    processor: Processor, now: int, *, batch_size: int = BATCH_SIZE, max_items: int = 500
) -> PollReport:
    report = PollReport()
    claimed: list[RequestItem] = []
    region = processor.settings.region
    for item in store.waiting_requests(region, now, limit=max_items):
        decision = poll_decision(item, now)
        if decision == "time_out":
            error = StreamerError(
                ErrorCode.TIMEOUT,
                "the external work did not finish before its deadline",
                details={"deadline_at": int(item.deadline_at)},
            )
            if end_request(
                item, "FAILED", error, processor.delivery, from_statuses=(WAITING,), now=now
            ):
                report.timed_out.append(item.request_id)
                metrics.count(
                    metric_names.EXTERNAL_JOB_POLLS, action=item.action, outcome="timed_out"
                )
        elif decision == "poll" and store.claim_poll(item, now, now + processor.lease_ms()):
            claimed.append(item)
        else:
            report.skipped.append(item.request_id)
    if claimed:
        workers = max(1, min(batch_size, len(claimed)))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(copy_context().run, _poll_one, processor, i) for i in claimed]
            for item, future in zip(claimed, futures, strict=True):
                polled = future.result()
                (report.polled if polled else report.skipped).append(item.request_id)
                metrics.count(
                    metric_names.EXTERNAL_JOB_POLLS,
                    action=item.action,
                    outcome="polled" if polled else "not_recorded",
                )
    if report.polled or report.timed_out:
        log.info("poll", extra={"fields": report.to_dict()})
    return report


def _poll_one(processor: Processor, item: RequestItem) -> bool:
    try:
        processor.poll(item)
    except store.StoreUnavailable:
        # The claim expires and the next poller takes the request again.
        log.warning("poll not recorded; the request is polled again after its claim")
        return False
    return True


__all__ = ["BATCH_SIZE", "PollReport", "poll_decision", "poll_due"]
