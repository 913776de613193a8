"""Application actions: validate the payload, then run it now (sync) or queue it (async).

`runs_async` is the decision (docs/protocol.md section 4: an estimated duration at
or under the threshold runs synchronously). A sync run answers `response`; a
client `id` makes it idempotent and its answer retrievable. An async request
is stored PENDING and answered `acknowledgment`; the stream processor runs it.
A repeated `id` with the same action and payload gets the first answer again.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
from typing import Any

from streamer import metric_names, metrics, store, tracing
from streamer.admission import Caller
from streamer.answers import is_store_failure
from streamer.breaker import breaker_for
from streamer.circuit import Verdict, is_failure
from streamer.config import PICKUP_TIMEOUT_MS, Settings
from streamer.deadline import DeadlineExceeded, run_within
from streamer.errors import ErrorCode, StreamerError, Unavailable
from streamer.execution import Outcome, run_handler
from streamer.handlers import App, Handler, Request
from streamer.keys import due_shard, sweep_partition, watched_by
from streamer.logs import Timer, bind
from streamer.models import (
    ASYNC,
    COMPLETED,
    FAILED,
    PENDING,
    PROCESSING,
    SYNC,
    WAITING,
    RequestItem,
    request_key,
)
from streamer.protocol import ClientMessage, acknowledgment_message, now_ms, response_message
from streamer.schema import REQUESTS_BY_ACTIVE_OWNER

log = logging.getLogger("streamer.router")

#: A sync record older than the sync timeout by this much was left by a run that died.
STALE_SYNC_MARGIN_MS = 5000
#: Time kept back from the invocation's remaining time to answer after a sync run.
ANSWER_MARGIN_MS = 1000
#: The bits a version 4 UUID fixes (RFC 9562 section 5.4): its variant, then its version.
_UUID4_FIXED = (0xC000 << 48) | (0xF000 << 64)
_UUID4_BITS = (0x8000 << 48) | (4 << 76)


def new_request_id() -> str:
    """The id of a request its client gave none: `req-` and a random version 4 UUID's hex,
    as `uuid.uuid4().hex` writes it, without making a `uuid.UUID` (most of its cost)."""
    value = (int.from_bytes(os.urandom(16), "big") & ~_UUID4_FIXED) | _UUID4_BITS
    return f"req-{value:032x}"


def runs_async(handler: Handler, threshold_ms: int) -> bool:
    """The sync/async decision: work estimated over the threshold is queued."""
    return handler.estimated_duration_ms > threshold_ms


def sync_outcome(outcome: Outcome) -> Outcome:
    """What a sync run answers: COMPLETED or FAILED (a sync action cannot wait or retry)."""
    if outcome.status == WAITING:
        return Outcome(
            FAILED,
            error=StreamerError(
                ErrorCode.PROCESSING_FAILED,
                "a sync action cannot wait for external work; estimate it as async",
            ).to_dict(),
        )
    if outcome.status not in (COMPLETED, FAILED):
        return Outcome(FAILED, error=outcome.error)
    return outcome


def replay_response(
    item: RequestItem, now_ms: int | None = None, stale_after_ms: int | None = None
) -> dict[str, Any]:
    """The answer a repeated sync request gets: the stored response, or CONFLICT while running.

    With the time and the age at which a running sync item may be taken over
    (`stale_after_ms`), the conflict says when: `details.retry_after_ms`. A put whose
    answer was lost (DynamoDB's client timed out during an outage) may still have stored
    the item although no router runs it; the repeat then runs once the item is stale.
    """
    if item.status == COMPLETED:
        return response_message(item.request_id, data=item.result)
    if item.status == FAILED:
        return response_message(item.request_id, error=item.error)
    details: dict[str, Any] = {"request_id": item.request_id}
    if now_ms is not None and stale_after_ms is not None:
        details["retry_after_ms"] = max(1, int(item.created_at) + stale_after_ms - now_ms)
    raise StreamerError(
        ErrorCode.CONFLICT,
        "a request with this id is still running",
        details=details,
        retryable=True,
    )


def _unless_open(action: str, verdict: Verdict) -> Verdict:
    """`verdict` if it admits the request, else UNAVAILABLE: nothing is stored while it is open."""
    if verdict.admitted:
        return verdict
    raise Unavailable(
        f"action {action!r} is failing and refused for now; nothing was stored, try again",
        retry_after_ms=verdict.retry_after_ms,
    )


class _SyncProgress:
    """Sync handlers answer once; their progress reports go nowhere."""

    cancelled = False

    def report(self, percentage: float, message: str = "", metadata: Any = None) -> None:
        return None

    def checkpoint(self, state: Any) -> None:
        return None


class ApplicationActions:
    """Answers the app's actions; sync handlers run on `sync_pool` under a deadline."""

    def __init__(
        self, settings: Settings, app: App, sync_pool: concurrent.futures.ThreadPoolExecutor
    ) -> None:
        self.settings = settings
        self.app = app
        self._sync_pool = sync_pool
        self.breaker = breaker_for(settings)

    def answer(self, message: ClientMessage, caller: Caller, remaining_ms: int) -> dict[str, Any]:
        handler = self.app.get(message.action)
        if handler is None:
            raise StreamerError(
                ErrorCode.INVALID_ACTION,
                f"no handler for action {message.action!r}",
                details={"action": message.action},
            )
        payload = handler.validate(dict(message.payload))
        if runs_async(handler, self.settings.async_threshold_ms):
            _unless_open(message.action, self.breaker.admission(message.action))
            return self._queue(message, payload, handler, caller)
        verdict = _unless_open(message.action, self.breaker.permit_sync(message.action))
        return self._run_sync(message, payload, handler, caller, remaining_ms, verdict)

    # Async: store it PENDING, acknowledge it

    def _queue(
        self, message: ClientMessage, payload: dict, handler: Handler, caller: Caller
    ) -> dict[str, Any]:
        item = self._new_item(message, payload, handler, caller, kind=ASYNC, status=PENDING)
        bind(request_id=item.request_id)
        if self._at_active_cap(caller) and (
            message.id is None or store.get_request(caller.owner, message.id) is None
        ):
            raise StreamerError(
                ErrorCode.RATE_LIMITED,
                f"at most {self.settings.max_active_requests} requests may run at once per user",
                details={"max_active_requests": self.settings.max_active_requests},
                retryable=True,
            )
        if not store.create_request(item):
            item = self._existing(message, payload, caller)
            if item.kind != ASYNC:
                return replay_response(item)
            if caller.connection_id is not None and item.connection_id != caller.connection_id:
                # The repeat comes from a new connection: let it follow the run too.
                store.subscribe(
                    caller.owner,
                    item.request_id,
                    caller.connection_id,
                    caller.endpoint,
                    int(item.ttl),
                )
        log.info("request queued")
        return acknowledgment_message(item.request_id, int(item.estimated_duration_ms))

    def _at_active_cap(self, caller: Caller) -> bool:
        cap = self.settings.max_active_requests
        return cap > 0 and store.count_active(caller.owner) >= cap

    # Sync: run it now, under the deadline

    def _run_sync(
        self,
        message: ClientMessage,
        payload: dict,
        handler: Handler,
        caller: Caller,
        remaining_ms: int,
        verdict: Verdict,
    ) -> dict[str, Any]:
        item = None
        if message.id is not None:
            # A client id makes the answer retrievable and the run idempotent.
            item = self._new_item(message, payload, handler, caller, kind=SYNC, status=PROCESSING)
            now, stale_after_ms = now_ms(), self.settings.sync_timeout_ms + STALE_SYNC_MARGIN_MS
            if not store.create_request(item, stale_sync_before_ms=now - stale_after_ms):
                return replay_response(
                    self._existing(message, payload, caller), now, stale_after_ms
                )
        request_id = item.request_id if item else new_request_id()
        bind(request_id=request_id)
        request = Request(
            request_id=request_id,
            action=message.action,
            payload=payload,
            user_id=caller.identity.user_id,
            tenant_id=caller.identity.tenant_id,
            permissions=caller.identity.permissions,
            metadata=dict(message.metadata),
        )
        timeout_ms = max(0, min(self.settings.sync_timeout_ms, remaining_ms - ANSWER_MARGIN_MS))
        timer = Timer()
        outcome = sync_outcome(self._run(handler, request, timeout_ms))
        metrics.duration(metric_names.SYNC_DURATION, timer.elapsed_ms, action=message.action)
        failed = is_failure(outcome.status, (outcome.error or {}).get("code"))
        self.breaker.record(message.action, failed, verdict)
        if item is not None:
            self._record(item, outcome)
        if outcome.status == COMPLETED:
            return response_message(request_id, data=outcome.result)
        return response_message(request_id, error=outcome.error)

    def _record(self, item: RequestItem, outcome: Outcome) -> None:
        """Store a sync run's answer for repeats of its id; the caller gets it either way.

        The handler has run: failing its answer because the store is down
        would hide a result the caller can use. A repeat then finds the run
        PROCESSING (CONFLICT, retryable) until it is stale, and runs it again.
        """
        try:
            store.finish_request(
                item,
                from_statuses=(PROCESSING,),
                attempt=None,
                status=outcome.status,
                seq=0,
                now_ms=now_ms(),
                result=outcome.result,
                error=outcome.error,
            )
        except Exception as error:
            if not is_store_failure(error):
                raise
            log.warning("sync answer not stored: the store is unavailable")

    def _run(self, handler: Handler, request: Request, timeout_ms: int) -> Outcome:
        try:
            return run_within(
                lambda: run_handler(handler, request, _SyncProgress()),
                timeout_ms / 1000,
                self._sync_pool,
                inline=getattr(handler, "runs_inline", True),
            )
        except DeadlineExceeded:
            return Outcome(
                FAILED,
                error=StreamerError(
                    ErrorCode.TIMEOUT,
                    f"the handler ran past its {timeout_ms} ms deadline",
                    retryable=True,
                ).to_dict(),
            )

    # The stored request

    def _new_item(
        self,
        message: ClientMessage,
        payload: dict,
        handler: Handler,
        caller: Caller,
        *,
        kind: str,
        status: str,
    ) -> RequestItem:
        now = now_ms()
        identity = caller.identity
        request_id = message.id or new_request_id()
        item = RequestItem(
            request_key(caller.owner, request_id),
            owner=caller.owner,
            request_id=request_id,
            tenant_id=identity.tenant_id,
            user_id=identity.user_id,
            action=message.action,
            kind=kind,
            payload=payload,
            metadata=dict(message.metadata) or None,
            status=status,
            connection_id=caller.connection_id,
            endpoint=caller.endpoint,
            # Run where it is decided, whichever region received it (`streamer.regions`).
            origin_region=store.decider_of(caller.owner),
            trace_header=tracing.trace_header() if kind == ASYNC else None,
            estimated_duration_ms=handler.estimated_duration_ms,
            created_at=now,
            updated_at=now,
            progress=0,
            seq=0,
            attempt=0,
            max_attempts=self.settings.max_attempts,
            ttl=now // 1000 + self.settings.request_retention_s,
        )
        if kind == ASYNC:
            item.due_shard = due_shard(item.request_key, self.settings.due_shards)
            item.due_at = now + PICKUP_TIMEOUT_MS
            if watched_by(self.settings.max_active_requests) == REQUESTS_BY_ACTIVE_OWNER:
                # The per-user cap counts it, and its index is what finds it if it stalls.
                item.active_owner = caller.owner
                item.cap_due_at = item.due_at
            else:
                item.due_region = sweep_partition(item.origin_region, item.due_shard)
        return item

    def _existing(self, message: ClientMessage, payload: dict, caller: Caller) -> RequestItem:
        """The request an idempotent repeat refers to, or CONFLICT."""
        existing = store.get_request(caller.owner, message.id or "")
        if existing is None:
            # Taken and gone (expired) between the write and this read: rare.
            raise StreamerError(ErrorCode.CONFLICT, "request id is in use; retry", retryable=True)
        if existing.action != message.action or existing.payload != payload:
            raise StreamerError(
                ErrorCode.CONFLICT,
                "request id was already used with a different action or payload",
                details={"request_id": existing.request_id},
            )
        return existing
