"""Progress reporting: the `Progress` a running async handler gets.

A handler's reports are coalesced (`streamer.coalescer`, a pure decision)
into few `progress` messages, sent and persisted by one background thread
per running request (`streamer.progress_flusher`), so `report` never waits
on I/O.

Threading model. Two threads use a `ProgressReporter`:

- the *handler thread* runs the handler: it calls `report` and `checkpoint`
  and reads `cancelled`; the worker then calls `close` (from that thread or
  another, once the handler returned);
- the *flusher thread*, started by the reporter and ended by `close`, does
  all the I/O: publish, persist, the cancel check.

What each owns:

- `_lock` (a `Condition`) guards the mailbox between them, and only it: the
  coalescer, the outbox of updates due to be sent, the latest checkpoint and
  whether it changed, and `_closed`. Its holder never does I/O; the flusher
  thread waits on it until an update is due, a timer (pending update,
  persist, cancel check) expires, or `close` is called.
- The flusher thread alone touches the `ProgressFlusher` (`seq`, what was
  sent and persisted, when it last persisted and checked); no lock, because
  no other thread does. `close` reads its final `seq` after joining the
  thread.
- `cancelled` is a `threading.Event`: set by the flusher thread, read by
  the handler thread without a lock.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from streamer import tracing
from streamer.coalescer import Coalescer, Update
from streamer.errors import RequestCancelled
from streamer.progress_flusher import MAX_UNPERSISTED_MESSAGES, ProgressFlusher, Snapshot
from streamer.protocol import now_ms

__all__ = [
    "MAX_CHECKPOINT_BYTES",
    "MAX_UNPERSISTED_MESSAGES",
    "Coalescer",
    "ProgressReporter",
    "Snapshot",
    "Update",
]

log = logging.getLogger(__name__)

#: A checkpoint is stored on the request item; keep it small.
MAX_CHECKPOINT_BYTES = 32 * 1024


class ProgressReporter:
    """The `Progress` a running async handler gets; see the module for its threads.

    `publish`, `persist`, `is_cancelled` and `stop_asked` are called on the flusher thread
    only (`ProgressFlusher` says what each must do).
    """

    def __init__(
        self,
        request_id: str,
        *,
        publish: Callable[[dict[str, Any]], None],
        persist: Callable[[Snapshot], bool],
        is_cancelled: Callable[[], bool],
        stop_asked: Callable[[], bool] | None = None,
        flush_interval_s: float = 0.2,
        immediate_percent: float = 90.0,
        persist_interval_s: float = 1.0,
        start_seq: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.request_id = request_id
        #: `report` calls so far (the ProgressReports metric; compare with messages sent).
        self.reports = 0
        self._clock = clock
        # Guarded by _lock: the mailbox between the handler and the flusher thread.
        self._lock = threading.Condition()
        self._coalescer = Coalescer(flush_interval_s, immediate_percent)
        self._outbox: deque[Update] = deque()
        self._checkpoint: Any = None
        self._checkpoint_changed = False
        self._closed = False
        # The flusher thread's alone.
        self._flusher = ProgressFlusher(
            request_id,
            publish=publish,
            persist=persist,
            is_cancelled=is_cancelled,
            stop_asked=stop_asked,
            persist_interval_s=persist_interval_s,
            check_interval_s=flush_interval_s,
            start_seq=start_seq,
            now=clock(),
        )
        self._cancelled = self._flusher.cancelled
        self._thread = threading.Thread(
            target=tracing.carried(self._run), name=f"progress-{request_id}", daemon=True
        )
        self._thread.start()

    # The handler thread's side

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def report(
        self, percentage: float, message: str = "", metadata: dict[str, Any] | None = None
    ) -> None:
        if self._cancelled.is_set():
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
        with self._lock:
            self.reports += 1
            ready = self._coalescer.offer(update, self._clock())
            if ready is not None:
                self._outbox.append(ready)
            self._lock.notify()

    def checkpoint(self, state: Any) -> None:
        """Save a small JSON state; a re-driven attempt receives it as `request.checkpoint`."""
        encoded = json.dumps(state)
        if len(encoded.encode("utf-8")) > MAX_CHECKPOINT_BYTES:
            raise ValueError(f"checkpoint is larger than {MAX_CHECKPOINT_BYTES} bytes")
        with self._lock:
            self._checkpoint = json.loads(encoded)
            self._checkpoint_changed = True

    def close(self) -> int:
        """Send what is pending, stop the flusher thread, and return the last `seq` used."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join()
        return self._flusher.seq

    # The flusher thread's side

    def _run(self) -> None:
        while True:
            with self._lock:
                batch, closed = self._next_batch()
            for update in batch:
                self._flusher.send(update, self._clock())
            if closed:
                return
            self._flusher.tick(self._clock())

    def _next_batch(self) -> tuple[list[Update], bool]:
        """Wait (holding `_lock`) until there is work; the updates to send, and whether closed."""
        while True:
            if self._checkpoint_changed:
                self._flusher.take_checkpoint(self._checkpoint)
                self._checkpoint_changed = False
            if self._outbox or self._closed:
                break
            now = self._clock()
            wake = self._flusher.wake_at(self._coalescer.deadline())
            if wake <= now:
                break
            self._lock.wait(wake - now)
        due = self._coalescer.due(self._clock())
        if due is not None:
            self._outbox.append(due)
        if self._closed:
            final = self._coalescer.drain()
            if final is not None:
                self._outbox.append(final)
        batch = list(self._outbox)
        self._outbox.clear()
        return batch, self._closed
