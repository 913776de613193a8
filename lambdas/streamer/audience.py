"""The connections that receive one request's messages: its owner and subscribers."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from streamer import lifecycle, store
from streamer.delivery import Delivery, Sent
from streamer.errors import StreamerError
from streamer.models import RequestItem
from streamer.protocol import complete_message


class Audience:
    """Sends a request's `progress` and `complete` to everyone watching it.

    Subscribers are re-read at most once per `refresh_s` (subscriptions made
    mid-run start receiving within that time) and always before `complete`.
    That read also tells whether a cancel left its stop marker
    (`store.watchers`), which `stop_asked` answers from it when it is recent.
    """

    def __init__(
        self,
        item: RequestItem,
        delivery: Delivery,
        *,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._owner = item.owner
        self._request_id = item.request_id
        # A request started over HTTP has no owning connection: subscribers only.
        self._owner_target: tuple[str, str] | None = (
            (item.connection_id, item.endpoint or "") if item.connection_id else None
        )
        self._delivery = delivery
        self._refresh_s = refresh_s
        self._clock = clock
        self._subscribers: list[tuple[str, str]] = []
        self._gone: set[str] = set()
        self._refreshed_at: float | None = None
        # When the last subscriber read succeeded, and whether any read saw the stop marker.
        self._read_at: float | None = None
        self._stop_seen = False
        self._lock = threading.Lock()

    def _targets(self, refresh: bool) -> list[tuple[str, str]]:
        now = self._clock()
        if refresh or self._refreshed_at is None or now - self._refreshed_at >= self._refresh_s:
            self._refreshed_at = now
            # On failure keep the last known subscribers; the owner still gets the message.
            with contextlib.suppress(store.StoreUnavailable):
                self._read_watchers(now)
        owner = [self._owner_target] if self._owner_target else []
        targets = owner + [t for t in self._subscribers if t[0] not in (o[0] for o in owner)]
        return [t for t in targets if t[0] not in self._gone]

    def _read_watchers(self, now: float) -> None:
        watchers = store.watchers(self._owner, self._request_id)
        fallback = self._owner_target[1] if self._owner_target else ""
        self._subscribers = [
            (s.connection_id, s.endpoint or fallback) for s in watchers.subscribers
        ]
        self._stop_seen = self._stop_seen or watchers.stop_asked
        self._read_at = now

    def stop_asked(self, within_s: float) -> bool:
        """Whether a cancel asked the request to stop: from the subscriber read of the last
        `within_s` seconds if there was one, else from one read of the stop marker."""
        with self._lock:
            now = self._clock()
            if self._stop_seen:
                return True
            if self._read_at is not None and now - self._read_at <= within_s:
                return False
        return store.stop_asked(self._owner, self._request_id)

    def send(self, message: dict[str, Any], *, refresh: bool = False) -> int:
        """Send to every target; returns how many accepted it."""
        with self._lock:
            delivered = 0
            for connection_id, endpoint in self._targets(refresh):
                sent = self._delivery.send(connection_id, endpoint, message)
                if sent is Sent.DELIVERED:
                    delivered += 1
                elif sent is Sent.GONE:
                    self._gone.add(connection_id)
            return delivered


def stored_complete(item: RequestItem) -> dict[str, Any]:
    """The `complete` of an ended request, rebuilt from what is stored."""
    return complete_message(
        item.request_id,
        int(item.seq),
        item.status,
        result=item.result,
        error=item.error,
        timestamp=int(item.updated_at),
    )


def end_request(
    item: RequestItem,
    status: str,
    error: StreamerError,
    delivery: Delivery,
    *,
    from_statuses: tuple[str, ...],
    now: int,
    last_seq: int | None = None,
) -> bool:
    """End a request no worker is running (cancel, sweeper) and send its `complete`.

    The `complete` follows `last_seq`, the last `seq` the request's messages
    may have used (default: the persisted one). Conditional on the request
    still being in `from_statuses` at the attempt `item` shows; False (and
    nothing sent) if it changed in between.
    """
    seq = (int(item.seq) if last_seq is None else last_seq) + 1
    ended = store.finish_request(
        item,
        from_statuses=from_statuses,
        attempt=int(item.attempt),
        status=status,
        seq=seq,
        now_ms=now,
        error=error.to_dict(),
    )
    if ended:
        Audience(item, delivery).send(
            complete_message(item.request_id, seq, status, error=error.to_dict(), timestamp=now),
            refresh=True,
        )
        lifecycle.request_ended(item, now)
    return ended
