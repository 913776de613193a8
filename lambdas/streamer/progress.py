"""Progress reporting: coalescing a handler's reports into few messages.

`Coalescer` holds the decision (pure, clock passed in); `ProgressReporter`
is what handlers call, with one background thread per running request that
sends, persists and watches for cancellation, so `report` never waits on I/O.

Rules (PROTOCOL.md section 3): at most one `progress` per flush interval;
the first report, the first report at or above the immediate threshold and
the report of 100 % go out at once; the latest pending report goes out within
one interval even if the handler goes quiet. Updates at or above the threshold
after the first are paced like the others, so a handler that reports often
near the end cannot flood the client.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamer.errors import RequestCancelled
from streamer.protocol import now_ms, progress_message

log = logging.getLogger(__name__)

#: A checkpoint is stored on the request item; keep it small.
MAX_CHECKPOINT_BYTES = 32 * 1024
#: At most this many messages go out past the last `seq` persisted on the
#: request. A worker that dies leaves no record of what it sent since, so
#: whoever speaks for the request next (the sweeper, a re-driven attempt)
#: continues this far ahead, and no client sees a `seq` twice.
MAX_UNPERSISTED_MESSAGES = 32


@dataclass(frozen=True)
class Update:
    percentage: float
    message: str
    metadata: dict[str, Any] | None
    timestamp: int


class Coalescer:
    """Decides which progress updates are sent and when."""

    def __init__(self, interval_s: float, immediate_percent: float) -> None:
        self.interval_s = interval_s
        self.immediate_percent = immediate_percent
        self._pending: Update | None = None
        self._last_sent_at: float | None = None
        self._crossed_threshold = False

    def offer(self, update: Update, now: float) -> Update | None:
        """Take a new report; return it if it must go out now, else keep it pending."""
        if self._immediate(update) or self._interval_passed(now):
            self._pending = None
            self._last_sent_at = now
            return update
        self._pending = update
        return None

    def due(self, now: float) -> Update | None:
        """The pending update, if its interval has passed."""
        if self._pending is not None and self._interval_passed(now):
            update, self._pending = self._pending, None
            self._last_sent_at = now
            return update
        return None

    def deadline(self) -> float | None:
        """When the pending update falls due; None if nothing is pending."""
        if self._pending is None or self._last_sent_at is None:
            return None
        return self._last_sent_at + self.interval_s

    def drain(self) -> Update | None:
        """The pending update regardless of time (the final flush)."""
        update, self._pending = self._pending, None
        return update

    def _interval_passed(self, now: float) -> bool:
        return self._last_sent_at is None or now - self._last_sent_at >= self.interval_s

    def _immediate(self, update: Update) -> bool:
        if update.percentage >= 100:
            return True
        if update.percentage >= self.immediate_percent and not self._crossed_threshold:
            self._crossed_threshold = True
            return True
        return False


@dataclass(frozen=True)
class Snapshot:
    """What the reporter asks to persist: the latest sent progress and checkpoint."""

    percentage: float
    message: str
    seq: int
    checkpoint: Any


class ProgressReporter:
    """The `Progress` a running async handler gets.

    `publish` sends one server message to the request's audience; `persist`
    stores a `Snapshot` and returns False once the attempt should stop
    (cancelled, or another worker owns the request); `is_cancelled` is
    polled once per flush interval.
    """

    def __init__(
        self,
        request_id: str,
        *,
        publish: Callable[[dict[str, Any]], None],
        persist: Callable[[Snapshot], bool],
        is_cancelled: Callable[[], bool],
        flush_interval_s: float = 0.2,
        immediate_percent: float = 90.0,
        persist_interval_s: float = 1.0,
        start_seq: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.request_id = request_id
        self._publish = publish
        self._persist = persist
        self._is_cancelled = is_cancelled
        self._persist_interval_s = persist_interval_s
        self._clock = clock
        self._coalescer = Coalescer(flush_interval_s, immediate_percent)
        self._condition = threading.Condition()
        self._outbox: deque[Update] = deque()
        self._seq = start_seq
        self._persisted_seq = start_seq
        self._latest_sent: Update | None = None
        self._checkpoint: Any = None
        self._dirty = False
        self._last_persist = clock()
        self._last_cancel_check = clock()
        self._cancelled = False
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"progress-{request_id}", daemon=True
        )
        self._thread.start()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def seq(self) -> int:
        """The `seq` of the last message sent for this request."""
        return self._seq

    def report(
        self, percentage: float, message: str = "", metadata: dict[str, Any] | None = None
    ) -> None:
        if self._cancelled:
            raise RequestCancelled(self.request_id)
        try:
            value = float(percentage)
        except (TypeError, ValueError):
            log.warning("progress percentage is not a number; report ignored")
            return
        if not math.isfinite(value):
            log.warning("progress percentage is not finite; report ignored")
            return
        update = Update(
            percentage=min(100.0, max(0.0, value)),
            message=str(message),
            metadata=dict(metadata) if metadata else None,
            timestamp=now_ms(),
        )
        with self._condition:
            ready = self._coalescer.offer(update, self._clock())
            if ready is not None:
                self._outbox.append(ready)
            self._condition.notify()

    def checkpoint(self, state: Any) -> None:
        """Save a small JSON state; a re-driven attempt receives it as `request.checkpoint`."""
        encoded = json.dumps(state)
        if len(encoded.encode("utf-8")) > MAX_CHECKPOINT_BYTES:
            raise ValueError(f"checkpoint is larger than {MAX_CHECKPOINT_BYTES} bytes")
        with self._condition:
            self._checkpoint = json.loads(encoded)
            self._dirty = True

    def close(self) -> int:
        """Send what is pending, stop the thread, and return the last `seq` used."""
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._thread.join()
        return self._seq

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._outbox and not self._closed:
                    now = self._clock()
                    deadlines = [
                        self._coalescer.deadline(),
                        self._last_cancel_check + self._coalescer.interval_s,
                    ]
                    if self._dirty:
                        deadlines.append(self._last_persist + self._persist_interval_s)
                    wake = min(d for d in deadlines if d is not None)
                    if wake <= now:
                        break
                    self._condition.wait(wake - now)
                now = self._clock()
                due = self._coalescer.due(now)
                if due is not None:
                    self._outbox.append(due)
                if self._closed:
                    final = self._coalescer.drain()
                    if final is not None:
                        self._outbox.append(final)
                batch = list(self._outbox)
                self._outbox.clear()
                closed = self._closed
            for update in batch:
                self._send(update)
            now = self._clock()
            if closed:
                return
            if self._dirty and now - self._last_persist >= self._persist_interval_s:
                self._save(now)
            if now - self._last_cancel_check >= self._coalescer.interval_s:
                self._last_cancel_check = now
                self._check_cancelled()

    def _send(self, update: Update) -> None:
        if self._seq - self._persisted_seq >= MAX_UNPERSISTED_MESSAGES:
            self._save(self._clock())
            if self._seq - self._persisted_seq >= MAX_UNPERSISTED_MESSAGES:
                # Progress is best effort; running further ahead of the store is not.
                log.warning("progress not sent: the request's seq could not be persisted")
                return
        self._seq += 1
        self._latest_sent = update
        self._dirty = True
        message = progress_message(
            self.request_id,
            self._seq,
            update.percentage,
            update.message,
            update.metadata,
            update.timestamp,
        )
        try:
            self._publish(message)
        except Exception:
            log.exception("progress not delivered")

    def _save(self, now: float) -> None:
        self._last_persist = now
        with self._condition:
            latest, checkpoint, self._dirty = self._latest_sent, self._checkpoint, False
        snapshot = Snapshot(
            percentage=latest.percentage if latest else 0.0,
            message=latest.message if latest else "",
            seq=self._seq,
            checkpoint=checkpoint,
        )
        try:
            if self._persist(snapshot):
                self._persisted_seq = snapshot.seq
                # The persist is conditional on no cancel: it was this interval's check.
                self._last_cancel_check = now
            else:
                self._cancelled = True
        except Exception:
            log.exception("progress not persisted")
            with self._condition:
                self._dirty = True

    def _check_cancelled(self) -> None:
        try:
            if self._is_cancelled():
                self._cancelled = True
        except Exception:
            log.exception("could not check for cancellation")
