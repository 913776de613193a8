"""The `$default` route: validate a frame, answer system actions, run or queue work.

Every answer is returned to the caller as the route response; nothing here
posts through the management API except `complete` messages of a cancel.
"""

from __future__ import annotations

import concurrent.futures
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamer import store
from streamer.audience import stored_complete
from streamer.config import CONNECTION_TTL_S, PICKUP_TIMEOUT_MS, Settings
from streamer.errors import ErrorCode, StreamerError
from streamer.events import Identity
from streamer.execution import Outcome, run_handler
from streamer.handlers import App, Handler, Request
from streamer.logs import bind
from streamer.models import (
    ASYNC,
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    PROCESSING,
    RETRYING,
    SYNC,
    WAITING,
    RequestItem,
    owner_key,
    request_key,
)
from streamer.protocol import (
    CANCEL,
    PING,
    STATUS,
    SUBSCRIBE,
    UNSUBSCRIBE,
    WATCH,
    ClientMessage,
    acknowledgment_message,
    client_id_of,
    error_message,
    now_ms,
    parse_client_message,
    pong_message,
    progress_message,
    response_message,
    status_message,
    unsubscribed_message,
    watch_token_message,
)
from streamer.ratelimit import ConnectionRateLimiter, TokenBucket

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """The connection a frame came from and who is behind it (from the authorizer).

    An HTTP caller has no connection (`connection_id` and `endpoint` None): its
    requests are followed by polling or by subscribers, and the per-connection
    rate limit is the HTTP API stage's throttling instead.
    """

    connection_id: str | None
    identity: Identity
    endpoint: str | None

    @property
    def owner(self) -> str:
        return owner_key(self.identity.tenant_id, self.identity.user_id)


class _SyncProgress:
    """Sync handlers answer once; their progress reports go nowhere."""

    cancelled = False

    def report(self, percentage: float, message: str = "", metadata: Any = None) -> None:
        return None

    def checkpoint(self, state: Any) -> None:
        return None


#: Permissions (token claim `permissions`) that reach other users' requests of the tenant.
READ_TENANT = "requests:read:tenant"
CANCEL_TENANT = "requests:cancel:tenant"
#: What a connection opened with a watch token may do, on its one request.
WATCH_ACTIONS = frozenset({PING, STATUS, SUBSCRIBE, UNSUBSCRIBE})


def runs_async(handler: Handler, threshold_ms: int) -> bool:
    """The sync/async decision: work estimated over the threshold is queued."""
    return handler.estimated_duration_ms > threshold_ms


def rate_limiter(settings: Settings) -> ConnectionRateLimiter | None:
    """The per-connection limiter the settings ask for; None when the rate is 0 (off)."""
    if settings.rate_limit_per_s <= 0:
        return None
    burst = settings.rate_limit_burst or settings.rate_limit_per_s
    return ConnectionRateLimiter(TokenBucket(settings.rate_limit_per_s, burst))


def not_found(request_id: str) -> StreamerError:
    # The same answer for unknown ids and ids of other tenants or users.
    return StreamerError(ErrorCode.NOT_FOUND, "no such request", details={"request_id": request_id})


class Router:
    def __init__(
        self,
        settings: Settings,
        app: App,
        *,
        sync_pool: concurrent.futures.ThreadPoolExecutor,
        delivery: Callable[[], Any],
    ) -> None:
        self.settings = settings
        self.app = app
        self._sync_pool = sync_pool
        self._delivery = delivery
        self._limiter = rate_limiter(settings)

    def handle(self, body: str | None, caller: Caller, remaining_ms: int) -> dict[str, Any]:
        """Answer one frame with the server message to return to the caller."""
        client_id = None
        try:
            self._admit(caller)
            message = parse_client_message(body)
            client_id = message.id
            bind(action=message.action, client_id=client_id)
            if caller.identity.watch_request is not None:
                self._check_watch_scope(message, caller)
            if message.is_system:
                return self._system(message, caller)
            return self._application(message, caller, remaining_ms)
        except StreamerError as error:
            if client_id is None:
                client_id = client_id_of(body)
            return error_message(error, client_id)

    # Limits and scopes

    def _admit(self, caller: Caller) -> None:
        """The per-connection rate limit: every frame counts, valid or not."""
        if caller.connection_id is None or self._limiter is None:
            return
        verdict = self._limiter.admit(caller.connection_id, now_ms())
        if not verdict.admitted:
            bucket = self._limiter.bucket
            raise StreamerError(
                ErrorCode.RATE_LIMITED,
                f"more than {bucket.burst} messages at once or {bucket.rate_per_s:g} a second "
                "on this connection",
                details={
                    "limit_per_second": bucket.rate_per_s,
                    "burst": bucket.burst,
                    "retry_after_ms": verdict.retry_after_ms,
                },
                retryable=True,
            )

    def _check_watch_scope(self, message: ClientMessage, caller: Caller) -> None:
        if message.action not in WATCH_ACTIONS or message.topic is not None:
            raise StreamerError(
                ErrorCode.FORBIDDEN,
                "a watch token may only follow its request (status, subscribe, unsubscribe)",
            )
        if message.request_id is not None and (
            message.request_id != caller.identity.watch_request or message.user_id is not None
        ):
            raise not_found(message.request_id)

    def _owner_of_target(self, message: ClientMessage, caller: Caller) -> str:
        """Whose request a system action names: the caller's, or with a tenant-wide
        permission another user's of the same tenant. Without the permission the
        answer is NOT_FOUND, as for an unknown id."""
        identity = caller.identity
        if message.user_id is None or message.user_id == identity.user_id:
            return caller.owner
        needed = CANCEL_TENANT if message.action == CANCEL else READ_TENANT
        if needed not in identity.permissions:
            if message.action == CANCEL and READ_TENANT in identity.permissions:
                raise StreamerError(
                    ErrorCode.FORBIDDEN, f"cancelling another user's request needs {needed}"
                )
            raise not_found(message.request_id or "")
        return owner_key(identity.tenant_id, message.user_id)

    # System actions

    def _system(self, message: ClientMessage, caller: Caller) -> dict[str, Any]:
        if caller.connection_id is None:
            # Over HTTP a request is read with GET /requests/{id}; the rest need a connection.
            raise StreamerError(
                ErrorCode.INVALID_ACTION,
                f"{message.action!r} needs a WebSocket connection",
                details={"action": message.action},
            )
        if message.topic is not None:
            return self._topic(message, caller)
        if message.action == PING:
            now = now_ms()
            store.touch_connection(caller.connection_id, now, now // 1000 + CONNECTION_TTL_S)
            return pong_message()
        request_id = message.request_id or ""
        owner = self._owner_of_target(message, caller)
        item = store.get_request(owner, request_id)
        if message.action == SUBSCRIBE:
            if item is None:
                raise not_found(request_id)
            store.subscribe(owner, request_id, caller.connection_id, caller.endpoint, int(item.ttl))
            # Read again after subscribing: a `complete` written in between is
            # either in this snapshot or sent to the new subscriber.
            item = store.get_request(owner, request_id) or item
            return snapshot_message(item)
        if item is None:
            raise not_found(request_id)
        if message.action == STATUS:
            return status_message(item.snapshot())
        if message.action == UNSUBSCRIBE:
            store.unsubscribe(owner, request_id, caller.connection_id)
            return unsubscribed_message(request_id)
        if message.action == CANCEL:
            return self._cancel(item)
        if message.action == WATCH:
            return self._watch_token(item, caller)
        raise StreamerError(ErrorCode.INVALID_ACTION, f"unknown system action {message.action!r}")

    def readable_request(self, caller: Caller, request_id: str) -> RequestItem:
        """The caller's own request, or the one its watch token names (consistent read).

        NOT_FOUND for any other id, exactly as for an unknown one.
        """
        watched = caller.identity.watch_request
        item = None
        if watched is None or watched == request_id:
            item = store.get_request(caller.owner, request_id)
        if item is None:
            raise not_found(request_id)
        return item

    def _topic(self, message: ClientMessage, caller: Caller) -> dict[str, Any]:
        """`subscribe`/`unsubscribe` of a topic of the caller's tenant."""
        from streamer import topics

        tenant_id, topic = caller.identity.tenant_id, message.topic or ""
        if message.action == SUBSCRIBE:
            return topics.subscribe(
                tenant_id, topic, caller.connection_id, caller.endpoint, now_ms()
            )
        return topics.unsubscribe(tenant_id, topic, caller.connection_id)

    def _cancel(self, item: RequestItem) -> dict[str, Any]:
        now = now_ms()
        if item.status in (PENDING, RETRYING, WAITING):
            from streamer.audience import end_request

            end_request(
                item,
                CANCELLED,
                StreamerError(ErrorCode.CANCELLED, "the request was cancelled"),
                self._delivery(),
                from_statuses=(PENDING, RETRYING, WAITING),
                now=now,
            )
        elif item.status == PROCESSING:
            # The running worker sees the flag within a flush interval and ends it.
            store.request_cancel(item, now)
        fresh = store.get_request(item.owner, item.request_id) or item
        return status_message(fresh.snapshot())

    def _watch_token(self, item: RequestItem, caller: Caller) -> dict[str, Any]:
        secret = self.settings.watch_token_secret
        if not secret:
            raise StreamerError(ErrorCode.FORBIDDEN, "watch tokens are not enabled")
        from streamer import watch

        token, expires_at = watch.mint(
            secret,
            caller.identity,
            item.user_id,
            item.request_id,
            self.settings.watch_token_ttl_s,
        )
        return watch_token_message(item.request_id, token, expires_at)

    # Application actions

    def _application(
        self, message: ClientMessage, caller: Caller, remaining_ms: int
    ) -> dict[str, Any]:
        handler = self.app.get(message.action)
        if handler is None:
            raise StreamerError(
                ErrorCode.INVALID_ACTION,
                f"no handler for action {message.action!r}",
                details={"action": message.action},
            )
        payload = handler.validate(dict(message.payload))
        if runs_async(handler, self.settings.async_threshold_ms):
            return self._queue(message, payload, handler, caller)
        return self._run_sync(message, payload, handler, caller, remaining_ms)

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
        request_id = message.id or f"req-{uuid.uuid4().hex}"
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
            origin_region=self.settings.region,
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
            item.due_region = self.settings.region
            item.due_at = now + PICKUP_TIMEOUT_MS
            item.active_owner = caller.owner
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

    def _run_sync(
        self,
        message: ClientMessage,
        payload: dict,
        handler: Handler,
        caller: Caller,
        remaining_ms: int,
    ) -> dict[str, Any]:
        timeout_ms = max(0, min(self.settings.sync_timeout_ms, remaining_ms - 1000))
        item = None
        if message.id is not None:
            # A client id makes the answer retrievable and the run idempotent.
            item = self._new_item(message, payload, handler, caller, kind=SYNC, status=PROCESSING)
            stale_before = now_ms() - self.settings.sync_timeout_ms - 5000
            if not store.create_request(item, stale_sync_before_ms=stale_before):
                existing = self._existing(message, payload, caller)
                return replay_response(existing)
        request_id = item.request_id if item else f"req-{uuid.uuid4().hex}"
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
        future = self._sync_pool.submit(run_handler, handler, request, _SyncProgress())
        try:
            outcome = future.result(timeout=timeout_ms / 1000)
        except concurrent.futures.TimeoutError:
            outcome = Outcome(
                FAILED,
                error=StreamerError(
                    ErrorCode.TIMEOUT,
                    f"the handler ran past its {timeout_ms} ms deadline",
                    retryable=True,
                ).to_dict(),
            )
        if outcome.status == WAITING:
            outcome = Outcome(
                FAILED,
                error=StreamerError(
                    ErrorCode.PROCESSING_FAILED,
                    "a sync action cannot wait for external work; estimate it as async",
                ).to_dict(),
            )
        elif outcome.status != COMPLETED and outcome.status != FAILED:
            outcome = Outcome(FAILED, error=outcome.error)
        if item is not None:
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
        if outcome.status == COMPLETED:
            return response_message(request_id, data=outcome.result)
        return response_message(request_id, error=outcome.error)


def replay_response(item: RequestItem) -> dict[str, Any]:
    """The answer a repeated sync request gets: the stored response, or CONFLICT while running."""
    if item.status == COMPLETED:
        return response_message(item.request_id, data=item.result)
    if item.status == FAILED:
        return response_message(item.request_id, error=item.error)
    raise StreamerError(
        ErrorCode.CONFLICT,
        "a request with this id is still running",
        details={"request_id": item.request_id},
        retryable=True,
    )


def snapshot_message(item: RequestItem) -> dict[str, Any]:
    """A subscriber's first message: the `complete` if terminal, else the latest `progress`."""
    if item.is_terminal:
        return stored_complete(item)
    return progress_message(
        item.request_id,
        int(item.seq),
        float(item.progress),
        item.progress_message or "",
        None,
        int(item.updated_at),
    )
