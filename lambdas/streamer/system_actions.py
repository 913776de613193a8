"""The system actions: `ping`, `status`, `subscribe`, `unsubscribe`, `cancel`, `watch`.

They read and change requests the caller may reach (`streamer.admission`
decides whose), and topics of the caller's tenant. Each is answered with one
server message; only a cancel also sends `complete` messages, through the
management API, to the request's audience.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from streamer import store
from streamer.admission import Caller, not_found, owner_of_target
from streamer.audience import stored_complete
from streamer.config import CONNECTION_TTL_S, Settings
from streamer.errors import ErrorCode, StreamerError
from streamer.models import CANCELLED, PENDING, PROCESSING, RETRYING, WAITING, RequestItem
from streamer.protocol import (
    CANCEL,
    PING,
    STATUS,
    SUBSCRIBE,
    UNSUBSCRIBE,
    WATCH,
    ClientMessage,
    now_ms,
    pong_message,
    progress_message,
    status_message,
    unsubscribed_message,
    watch_token_message,
)

log = logging.getLogger(__name__)


class SystemActions:
    """Answers system actions; `delivery()` is the management API client of a cancel."""

    def __init__(self, settings: Settings, delivery: Callable[[], Any]) -> None:
        self.settings = settings
        self._delivery = delivery

    def answer(self, message: ClientMessage, caller: Caller) -> dict[str, Any]:
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
        owner = owner_of_target(message, caller)
        item = store.get_request(owner, request_id)
        if item is None:
            raise not_found(request_id)
        if message.action == SUBSCRIBE:
            store.subscribe(owner, request_id, caller.connection_id, caller.endpoint, int(item.ttl))
            # Read again after subscribing: a `complete` written in between is
            # either in this snapshot or sent to the new subscriber.
            item = store.get_request(owner, request_id) or item
            return snapshot_message(item)
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
        # A write refused because the request moved since it was read (a worker
        # claimed it, another region took it over) is tried once more on the
        # request as it is now: the cancel is not lost to that move.
        if not self._cancel_as_read(item):
            item = store.get_request(item.owner, item.request_id) or item
            self._cancel_as_read(item)
        fresh = store.get_request(item.owner, item.request_id) or item
        return status_message(fresh.snapshot())

    def _cancel_as_read(self, item: RequestItem) -> bool:
        """End or flag the request in the state `item` shows; False if that state was gone."""
        now = now_ms()
        if item.status in (PENDING, RETRYING, WAITING):
            from streamer.audience import end_request

            return end_request(
                item,
                CANCELLED,
                StreamerError(ErrorCode.CANCELLED, "the request was cancelled"),
                self._delivery(),
                from_statuses=(PENDING, RETRYING, WAITING),
                now=now,
            )
        if item.status == PROCESSING:
            if not store.request_cancel(item, now):
                return False
            self._ask_to_stop(item)
            return True
        return True

    @staticmethod
    def _ask_to_stop(item: RequestItem) -> None:
        """Leave the stop marker, which the running worker sees within a flush interval.

        The flag just written is what decides: if the marker cannot be written the
        worker still sees the flag with its next read of the request, within a
        persist interval (`streamer.progress_flusher`).
        """
        try:
            store.ask_to_stop(item.owner, item.request_id, int(item.ttl))
        except store.StoreUnavailable:
            log.warning(
                "stop marker not written; the worker sees the cancel within a persist interval"
            )

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
