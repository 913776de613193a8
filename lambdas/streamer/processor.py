"""The stream processor: claim PENDING requests from stream records and run them.

Records are acted on only if their new image is PENDING and was written in
this region (global-table replicas carry every region's writes). A claim is
one conditional update, so a redelivered record runs nothing twice. Records
of one batch run concurrently, bounded, except records of the same item,
which keep their order. Handler failures are recorded on the request and
never fail the batch; only records that could not be claimed because DynamoDB
was unavailable are returned as batch item failures, to be retried.
"""

from __future__ import annotations

import concurrent.futures
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from streamer import lifecycle, store
from streamer.audience import Audience
from streamer.config import Settings
from streamer.errors import ErrorCode, StreamerError
from streamer.events import StreamRecord
from streamer.execution import RETRY, Outcome, run_handler, run_poll
from streamer.handlers import App, Handler, Request
from streamer.logs import Timer, copy_context, log_context
from streamer.models import CANCELLED, FAILED, PROCESSING, WAITING, RequestItem
from streamer.progress import ProgressReporter, Snapshot
from streamer.protocol import complete_message, now_ms, progress_message
from streamer.record_filter import processor_records

log = logging.getLogger(__name__)

#: Backoff of handler retries: base * 2^(attempt-1), capped, with full jitter.
RETRY_BASE_MS = 1_000
RETRY_CAP_MS = 60_000
#: Longest pause between polls of a job whose external system keeps failing.
POLL_BACKOFF_CAP_MS = 300_000


def is_actionable(record: StreamRecord, region: str) -> bool:
    """Whether this record asks this region's processor to run a request.

    The same test as the event source mapping's filter (both are
    `record_filter.processor_records`), repeated here so an unfiltered or
    redelivered record is harmless.
    """
    return processor_records(region).matches(record.event_name, record.new_image)


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


class Processor:
    def __init__(
        self, settings: Settings, app: App, delivery: Any, *, lease_ms: Callable[[], int]
    ) -> None:
        self.settings = settings
        self.app = app
        self.delivery = delivery
        self.lease_ms = lease_ms

    def process_batch(self, records: Sequence[StreamRecord]) -> list[str]:
        """Run a batch; return the sequence numbers to report as batch item failures."""
        groups: dict[tuple, list[StreamRecord]] = {}
        for record in records:
            groups.setdefault(record.item_key, []).append(record)
        failures: list[str] = []
        workers = max(1, min(self.settings.processor_concurrency, len(groups)))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(copy_context().run, self._run_group, group) for group in groups.values()
            ]
            for future in futures:
                failures.extend(future.result())
        # Lambda retries from the lowest failed sequence number; report in stream order.
        order = {r.sequence_number: i for i, r in enumerate(records)}
        return sorted(failures, key=lambda s: order.get(s, 0))

    def _run_group(self, group: list[StreamRecord]) -> list[str]:
        for index, record in enumerate(group):
            try:
                self.run_record(record)
            except store.StoreUnavailable as error:
                log.warning(
                    "record not claimed; returned for retry",
                    extra={
                        "fields": {
                            "sequence_number": record.sequence_number,
                            "error_code": str(error),
                        }
                    },
                )
                # Later records of the same item must not overtake this one.
                return [r.sequence_number for r in group[index:]]
        return []

    def run_record(self, record: StreamRecord) -> None:
        """Claim and run the request of one record (a no-op if not ours or taken)."""
        if not is_actionable(record, self.settings.region):
            return
        item = RequestItem.from_raw_data(dict(record.new_image or {}))
        with log_context(
            request_id=item.request_id,
            connection_id=item.connection_id,
            tenant_id=item.tenant_id,
            action=item.action,
        ):
            now = now_ms()
            if not store.claim_request(item, now, now + self.lease_ms()):
                log.info("request already claimed or no longer pending")
                return
            self._run(item)

    def _run(self, item: RequestItem) -> None:
        self._attempt(item, run_handler)

    def poll(self, item: RequestItem) -> None:
        """Run the handler's `poll` on a WAITING request this worker claimed."""
        state = dict(item.wait_state or {})
        with log_context(
            request_id=item.request_id,
            connection_id=item.connection_id,
            tenant_id=item.tenant_id,
            action=item.action,
        ):
            self._attempt(
                item, lambda handler, request, reporter: run_poll(handler, request, state, reporter)
            )

    def _attempt(
        self, item: RequestItem, call: Callable[[Handler, Request, ProgressReporter], Outcome]
    ) -> None:
        timer = Timer()
        attempt = int(item.attempt)
        audience = Audience(item, self.delivery)
        handler = self.app.get(item.action)
        if handler is None:
            error = StreamerError(
                ErrorCode.INVALID_ACTION, f"no handler for action {item.action!r}"
            )
            self._finish(
                item, attempt, Outcome(FAILED, error=error.to_dict()), int(item.seq), audience
            )
            return
        settings = self.settings
        status = item.status
        reporter = ProgressReporter(
            item.request_id,
            publish=audience.send,
            persist=lambda snap: self._persist(item, attempt, snap, status),
            is_cancelled=lambda: store.cancel_requested(item.owner, item.request_id),
            flush_interval_s=settings.progress_flush_ms / 1000,
            immediate_percent=settings.progress_immediate_percent,
            persist_interval_s=settings.progress_persist_ms / 1000,
            start_seq=int(item.seq),
        )
        request = Request(
            request_id=item.request_id,
            action=item.action,
            payload=dict(item.payload or {}),
            user_id=item.user_id,
            tenant_id=item.tenant_id,
            metadata=dict(item.metadata or {}),
            attempt=attempt,
            checkpoint=item.checkpoint,
        )
        log.info("request started", extra={"fields": {"attempt": attempt, "status": status}})
        outcome = call(handler, request, reporter)
        last_seq = reporter.close()
        if reporter.cancelled and outcome.status != CANCELLED:
            # Cancelled while the handler was finishing: the cancel wins.
            outcome = Outcome(
                CANCELLED,
                error=StreamerError(ErrorCode.CANCELLED, "the request was cancelled").to_dict(),
            )
        self._finish(item, attempt, outcome, last_seq, audience)
        log.info(
            "request ended" if outcome.status != WAITING else "request waiting",
            extra={"fields": {"status": outcome.status, "duration_ms": timer.elapsed_ms}},
        )

    def _persist(self, item: RequestItem, attempt: int, snap: Snapshot, status: str) -> bool:
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

    def _wait(
        self, item: RequestItem, attempt: int, outcome: Outcome, last_seq: int, now: int
    ) -> None:
        """Store the request WAITING until its next poll.

        A poll that failed temporarily (RETRY) keeps its state and is tried
        again, later after each failure in a row (`poll_backoff_ms`): only the
        deadline ends a waiting request early.
        """
        waiting = outcome.waiting
        if waiting is None:
            state = dict(item.wait_state or {})
            interval_ms = int(item.poll_interval_ms or RETRY_BASE_MS)
            failures = int(item.poll_failures or 0) + 1
            pause_ms = poll_backoff_ms(interval_ms, failures)
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

    def _finish(
        self, item: RequestItem, attempt: int, outcome: Outcome, last_seq: int, audience: Audience
    ) -> None:
        now = now_ms()
        seq = last_seq + 1
        if outcome.status == WAITING or (outcome.status == RETRY and item.status == WAITING):
            self._wait(item, attempt, outcome, last_seq, now)
            return
        if outcome.status == RETRY and attempt < int(item.max_attempts):
            retry_after = now + retry_delay_ms(attempt)
            if store.schedule_retry(
                item,
                attempt,
                retry_after=retry_after,
                seq=seq,
                error=outcome.error or {},
                now_ms=now,
            ):
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
            return
        if outcome.status == RETRY:
            outcome = Outcome(FAILED, error=outcome.error)
        final = {"result": outcome.result} if outcome.error is None else {"error": outcome.error}
        # A poll's claim, not a lease, bounds how long the complete may take.
        deliver_by = item.lease_expires_at if item.status == PROCESSING else item.due_at
        if not store.finish_request(
            item,
            from_statuses=(PROCESSING, WAITING),
            attempt=attempt,
            status=outcome.status,
            seq=seq,
            now_ms=now,
            progress=100.0 if outcome.error is None else None,
            # Should this worker die before the complete is out, the sweeper sends it.
            deliver_by=int(deliver_by),
            **final,
        ):
            log.warning("request changed hands before it ended; its outcome is dropped")
            return
        audience.send(
            complete_message(item.request_id, seq, outcome.status, timestamp=now, **final),
            refresh=True,
        )
        # Before the request leaves the sweeper's index: should this worker die
        # here, the sweeper sends the complete and the event again.
        lifecycle.request_ended(item, now)
        try:
            store.complete_sent(item)
        except store.StoreUnavailable:
            log.warning("complete sent but not recorded; the sweeper will send it again")
