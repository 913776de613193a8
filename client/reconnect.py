"""When to try reconnecting after an unexpected drop (in seconds, for the Python API)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class ReconnectPolicy:
    """Jittered exponential backoff, then slow retries, by default for good.

    Attempt `n` (from 0) waits a uniformly random time between 0 and
    `min(max_delay, initial_delay * multiplier ** n)` ("full jitter"), so many
    clients dropped at once by the same outage do not come back in lockstep.
    Once `suspend_after` seconds have passed since the drop the client is
    `suspended` and tries every `suspended_retry` seconds or so (half to all
    of it). `max_attempts = None` never gives up; a number fails the client
    after that many failed attempts in a row (0 disables reconnecting).
    """

    max_attempts: int | None = None
    initial_delay: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0
    suspend_after: float = 120.0
    suspended_retry: float = 30.0

    def __post_init__(self) -> None:
        values = (self.initial_delay, self.max_delay, self.suspend_after, self.suspended_retry)
        if (self.max_attempts is not None and self.max_attempts < 0) or min(values) < 0:
            raise ValueError("reconnect policy values must not be negative")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before attempt `attempt` (counted from 0)."""
        try:
            grown = self.initial_delay * self.multiplier**attempt
        except OverflowError:
            return self.max_delay
        return min(self.max_delay, grown)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """A jittered wait before attempt `attempt` (counted from 0)."""
        return rng.uniform(0, self.ceiling(attempt))
