"""The stream processor: claim PENDING requests from stream records and run them.

Records are acted on only if their new image is PENDING and was written in
this region (global-table replicas carry every region's writes). A claim is
one conditional update, so a redelivered record runs nothing twice. Records
of one batch run concurrently, bounded, except records of the same item,
which keep their order. Handler failures are recorded on the request and
never fail the batch; only records that could not be claimed because DynamoDB
was unavailable are returned as batch item failures, to be retried.

Threading model. `process_batch` runs on the invocation's thread and hands
each item's records, in stream order, to one thread of a pool it owns for the
batch; it waits for them all before it returns. What the pool's threads share
is read-only once the `Processor` is built: its settings, the app's handlers
(which must therefore be safe to call from several threads at once), the
`Delivery` (thread-safe: one client per endpoint, made under its lock) and
`lease_ms`. A batch whose records fit one thread (one item, or a concurrency
of one) runs on the invocation's thread instead. Each group runs in a copy of
the invocation's context (`logs.copy_context`), so `lease_ms` and the log fields it reads are the
invocation's, and the fields a thread binds stay its own. Everything about
one request (its `RequestItem`, `Audience`, `ProgressReporter`) belongs to the
thread that claimed it; the reporter's background thread reaches the request
only through the `Audience` (which serialises sends under its lock) and
through conditional writes of its own, and is closed before the outcome is
written. The poller (`streamer.poller`) calls `poll` from its own pool under
the same rules.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Sequence
from typing import Any

from streamer import metric_names, metrics, store, tracing
from streamer.attempt import HandlerCall, run_attempt
from streamer.breaker import breaker_for
from streamer.circuit import Verdict, is_failure
from streamer.config import Settings
from streamer.events import StreamRecord
from streamer.execution import run_handler, run_poll
from streamer.handlers import App
from streamer.keys import due_shard
from streamer.logs import copy_context, current_fields, log_context
from streamer.models import RequestItem
from streamer.outcomes import resend_lost_complete
from streamer.protocol import now_ms
from streamer.record_filter import processor_records
from streamer.transitions import (
    POLL_BACKOFF_CAP_MS,
    RETRY_BASE_MS,
    RETRY_CAP_MS,
    poll_backoff_ms,
    retry_delay_ms,
)

log = logging.getLogger(__name__)


def is_actionable(record: StreamRecord, region: str) -> bool:
    """Whether this record asks this region's processor to run a request.

    The same test as the event source mapping's filter (both are
    `record_filter.processor_records`), repeated here so an unfiltered or
    redelivered record is harmless.
    """
    return processor_records(region).matches(record.event_name, record.new_image)


class Processor:
    def __init__(
        self, settings: Settings, app: App, delivery: Any, *, lease_ms: Callable[[], int]
    ) -> None:
        self.settings = settings
        self.app = app
        self.delivery = delivery
        self.lease_ms = lease_ms
        self.breaker = breaker_for(settings)

    def process_batch(self, records: Sequence[StreamRecord]) -> list[str]:
        """Run a batch; return the sequence numbers to report as batch item failures."""
        groups: dict[tuple, list[StreamRecord]] = {}
        for record in records:
            groups.setdefault(record.item_key, []).append(record)
        failures: list[str] = []
        workers = max(1, min(self.settings.processor_concurrency, len(groups)))
        if workers == 1:
            # One at a time anyway: on this thread, as a pool of one would run them, without
            # starting a thread per batch (about 0.16 ms of CPU, the cost of a batch of one).
            for group in groups.values():
                failures.extend(copy_context().run(self._run_group, group))
        else:
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [
                    pool.submit(copy_context().run, self._run_group, group)
                    for group in groups.values()
                ]
                for future in futures:
                    failures.extend(future.result())
        # Lambda retries from the lowest failed sequence number; report in stream order.
        order = {r.sequence_number: i for i, r in enumerate(records)}
        return sorted(failures, key=lambda s: order.get(s, 0))

    def _run_group(self, group: list[StreamRecord]) -> list[str]:
        """Run one item's records in order; the failed one and those after it go back."""
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
        with _request_log_context(item), tracing.continued(item.trace_header, "streamer.request"):
            tracing.annotate_request(current_fields())
            verdict = self.breaker.permit(item.action)
            now = now_ms()
            # Today's shard: a request keyed under one dropped since is keyed again.
            shard = due_shard(item.request_key, self.settings.due_shards)
            if not verdict.admitted:
                # Its action's circuit is open: the request waits for the sweeper
                # instead of running into the same failure.
                until = now + self.breaker.wait_ms(verdict)
                if store.defer_request(item, until=until, now_ms=now, shard=shard):
                    log.info("request deferred: its action's circuit is open")
                elif resend_lost_complete(item, self.delivery):
                    log.info("record came again after its request ended; complete sent again")
                return
            first_attempt = int(item.attempt or 0) == 0
            if not store.claim_request(item, now, now + self.lease_ms(), shard=shard):
                if resend_lost_complete(item, self.delivery):
                    log.info("record came again after its request ended; complete sent again")
                else:
                    log.info("request already claimed or no longer pending")
                return
            if first_attempt:
                metrics.duration(
                    metric_names.PICKUP_DURATION, now - int(item.created_at), action=item.action
                )
            self._attempt(item, run_handler, verdict)

    def poll(self, item: RequestItem) -> None:
        """Run the handler's `poll` on a WAITING request this worker claimed."""
        state = dict(item.wait_state or {})
        with _request_log_context(item):
            self._attempt(
                item, lambda handler, request, reporter: run_poll(handler, request, state, reporter)
            )

    def _attempt(
        self, item: RequestItem, call: HandlerCall, verdict: Verdict | None = None
    ) -> None:
        outcome = run_attempt(
            item, call, settings=self.settings, app=self.app, delivery=self.delivery
        )
        failed = is_failure(outcome.status, (outcome.error or {}).get("code"))
        self.breaker.record(item.action, failed, verdict)


def _request_log_context(item: RequestItem) -> Any:
    return log_context(
        request_id=item.request_id,
        connection_id=item.connection_id,
        tenant_id=item.tenant_id,
        action=item.action,
    )


__all__ = [
    "POLL_BACKOFF_CAP_MS",
    "RETRY_BASE_MS",
    "RETRY_CAP_MS",
    "Processor",
    "is_actionable",
    "poll_backoff_ms",
    "retry_delay_ms",
]
