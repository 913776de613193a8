"""Which progress reports become messages, and when: a pure decision, the clock passed in.

Rules (docs/protocol.md section 3): at most one `progress` per flush interval;
the first report, the first report at or above the immediate threshold and
the report of 100 % go out at once; the latest pending report goes out within
one interval even if the handler goes quiet. Updates at or above the threshold
after the first are paced like the others, so a handler that reports often
near the end cannot flood the client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
