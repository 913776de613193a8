"""The I/O half of a progress reporter: numbering, sending and persisting progress.

A `ProgressFlusher` belongs to the reporter's flusher thread: only that
thread calls it (see `streamer.progress` for the threading model), so it
holds no lock. It sends each update as a `progress` message with the next
`seq`, persists the latest sent update and checkpoint at most once per
persist interval, and checks for a cancel once per check interval. A check
reads the request (a full check) at least once per persist interval, a
persist standing for one, as it is conditional on no cancel; the checks in
between may ask the lighter `stop_asked`, which the subscriber read of the
request's audience answers for free when it is recent (`streamer.audience`).
A cancel whose stop marker was not written is so still seen within a persist
interval; one with its marker, within a check interval. A failed
send, persist or check is logged and never reaches the handler: progress is
best effort; only running too far ahead of the persisted `seq` is refused.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamer.coalescer import Update
from streamer.protocol import progress_message

log = logging.getLogger("streamer.progress")

#: At most this many messages go out past the last `seq` persisted on the
#: request. A worker that dies leaves no record of what it sent since, so
#: whoever speaks for the request next (the sweeper, a re-driven attempt)
#: continues this far ahead, and no client sees a `seq` twice.
MAX_UNPERSISTED_MESSAGES = 32


@dataclass(frozen=True)
class Snapshot:
    """What the reporter asks to persist: the latest sent progress and checkpoint."""

    percentage: float
    message: str
    seq: int
    checkpoint: Any


class ProgressFlusher:
    """Sends, persists and checks for a cancel, for one request; one thread calls it.

    `publish` sends one server message to the request's audience; `persist`
    stores a `Snapshot` and returns False once the attempt should stop
    (cancelled, or another worker owns the request); `is_cancelled` asks
    the store (the full check), `stop_asked`, if given, only whether a cancel
    left its stop marker. `cancelled` is set once any of them says the attempt
    is over.
    """

    def __init__(
        self,
        request_id: str,
        *,
        publish: Callable[[dict[str, Any]], None],
        persist: Callable[[Snapshot], bool],
        is_cancelled: Callable[[], bool],
        stop_asked: Callable[[], bool] | None = None,
        persist_interval_s: float,
        check_interval_s: float,
        start_seq: int,
        now: float,
    ) -> None:
        self.request_id = request_id
        self.cancelled = threading.Event()
        self.seq = start_seq
        self._publish = publish
        self._persist = persist
        self._is_cancelled = is_cancelled
        self._stop_asked = stop_asked
        self._persist_interval_s = persist_interval_s
        self._check_interval_s = check_interval_s
        self._persisted_seq = start_seq
        self._latest_sent: Update | None = None
        self._checkpoint: Any = None
        self._unsaved = False
        self._last_persist = now
        self._last_check = now
        # The claim that started the attempt read the request: the first full check.
        self._last_full_check = now

    def wake_at(self, pending_deadline: float | None) -> float:
        """When the flusher thread must act next, given when a pending update falls due."""
        times = [self._last_check + self._check_interval_s]
        if pending_deadline is not None:
            times.append(pending_deadline)
        if self._unsaved:
            times.append(self._last_persist + self._persist_interval_s)
        return min(times)

    def take_checkpoint(self, state: Any) -> None:
        """The handler's latest checkpoint, to persist with the next snapshot."""
        self._checkpoint = state
        self._unsaved = True

    def send(self, update: Update, now: float) -> None:
        """Send `update` with the next `seq`, unless that would run too far ahead of the store."""
        if self.seq - self._persisted_seq >= MAX_UNPERSISTED_MESSAGES:
            self._save(now)
            if self.seq - self._persisted_seq >= MAX_UNPERSISTED_MESSAGES:
                # Progress is best effort; running further ahead of the store is not.
                log.warning("progress not sent: the request's seq could not be persisted")
                return
        self.seq += 1
        self._latest_sent = update
        self._unsaved = True
        message = progress_message(
            self.request_id,
            self.seq,
            update.percentage,
            update.message,
            update.metadata,
            update.timestamp,
        )
        try:
            self._publish(message)
        except Exception:
            log.exception("progress not delivered")

    def tick(self, now: float) -> None:
        """Persist if the persist interval has passed, check for a cancel if its interval has."""
        if self._unsaved and now - self._last_persist >= self._persist_interval_s:
            self._save(now)
        if now - self._last_check >= self._check_interval_s:
            self._last_check = now
            self._check_cancelled(now)

    def _save(self, now: float) -> None:
        self._last_persist = now
        self._unsaved = False
        latest = self._latest_sent
        snapshot = Snapshot(
            percentage=latest.percentage if latest else 0.0,
            message=latest.message if latest else "",
            seq=self.seq,
            checkpoint=self._checkpoint,
        )
        try:
            if self._persist(snapshot):
                self._persisted_seq = snapshot.seq
                # The persist is conditional on no cancel: it was this interval's check.
                self._last_check = now
                self._last_full_check = now
            else:
                self.cancelled.set()
        except Exception:
            log.exception("progress not persisted")
            self._unsaved = True

    def _check_cancelled(self, now: float) -> None:
        light = (
            self._stop_asked is not None and now - self._last_full_check < self._persist_interval_s
        )
        try:
            if light:
                asked = self._stop_asked()
            else:
                asked = self._is_cancelled()
                self._last_full_check = now
            if asked:
                self.cancelled.set()
        except Exception:
            log.exception("could not check for cancellation")
