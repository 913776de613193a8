"""The per-connection message rate limit: a token bucket kept on the connection record.

The bucket is the generic cell rate algorithm (GCRA), which is a token bucket
stored as one number: the connection's theoretical arrival time `tat`, the
moment its bucket would be full again. A bucket refills one token every
`interval_us` and holds `burst` tokens. A message arriving at `now` is admitted
when `tat <= now + tolerance_us` (at least one token left), and then takes a
token: `tat = max(tat, now) + interval_us`. Times are in microseconds, so any
rate up to a million a second keeps its exact interval.

DynamoDB cannot compute `max`, so each of its two cases is its own conditional
write (`store.refill_bucket` when the bucket is full, `tat < now`;
`store.take_token` when it is not). The limiter tries the likelier case first
and the other when that one's condition fails, so a message costs one write
when the guess is right. The guess is the `tat` this process last wrote for the
connection: consecutive messages of a connection mostly reach the same warm
router, and without a guess the bucket of a connection that sends less than
`rate` messages a second is full. A message refused by both writes, or raced
by another message of the connection, is decided by a consistent read.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

from streamer import store

US_PER_S = 1_000_000


@dataclass(frozen=True)
class TokenBucket:
    """`rate_per_s` tokens a second into a bucket of `burst` tokens."""

    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not 0 < self.rate_per_s <= US_PER_S or self.burst < 1:
            raise ValueError(
                "a token bucket needs a rate from above 0 to 1,000,000 a second "
                "and a burst of at least 1"
            )

    @property
    def interval_us(self) -> int:
        """Time for one token to come back."""
        return round(US_PER_S / self.rate_per_s)

    @property
    def tolerance_us(self) -> int:
        """How far ahead of now `tat` may be for a message to be admitted."""
        return self.interval_us * (self.burst - 1)

    def admits(self, tat: int | None, now_us: int) -> bool:
        """Whether a bucket whose theoretical arrival time is `tat` has a token at `now_us`."""
        return tat is None or tat <= now_us + self.tolerance_us

    def retry_after_ms(self, tat: int, now_us: int) -> int:
        """How long until a bucket at `tat` has a token again, in whole milliseconds."""
        return max(0, math.ceil((tat - self.tolerance_us - now_us) / 1000))


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    #: When refused: how long until the connection's next message would be admitted.
    retry_after_ms: int = 0


ADMITTED = Verdict(admitted=True)


class ConnectionRateLimiter:
    """Admits or refuses each message of a connection, across every router instance."""

    #: Connections whose last `tat` this process remembers (the guess; see the module).
    REMEMBERED = 4096
    #: Reads a message may make to settle races before it is refused.
    MAX_ROUNDS = 2

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self._last_tat: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, connection_id: str, now_ms: int) -> Verdict:
        """Take a token of `connection_id`'s bucket at `now_ms`, or say how long to wait.

        A connection with no record (expired, or removed after a 410) is
        admitted: there is nothing to count against.
        """
        now = now_ms * 1000
        full = self._guess_full(connection_id, now)
        tat: int | None = None
        for _ in range(self.MAX_ROUNDS):
            for refill in (full, not full):
                written = self._write(connection_id, now, refill=refill)
                if written is not None:
                    self._remember(connection_id, written)
                    return ADMITTED
            connection = store.get_connection(connection_id, consistent=True)
            if connection is None:
                return ADMITTED
            tat = None if connection.rate_tat is None else int(connection.rate_tat)
            if not self.bucket.admits(tat, now):
                break
            # Another message of the connection wrote in between: try again from what it left.
            full = tat is None or tat < now
        # Refused, or raced by the connection's other messages every round (each of
        # which took a token): the wait is the one the last read shows.
        self._remember(connection_id, tat)
        wait = self.bucket.retry_after_ms(tat, now) if tat is not None else 0
        return Verdict(admitted=False, retry_after_ms=max(1, wait))

    def _write(self, connection_id: str, now: int, *, refill: bool) -> int | None:
        """The `tat` after taking a token in one of the two cases; None if not that case."""
        interval = self.bucket.interval_us
        if refill:
            written = store.refill_bucket(connection_id, now, interval)
            return now + interval if written else None
        return store.take_token(connection_id, now, interval, self.bucket.tolerance_us)

    def _guess_full(self, connection_id: str, now: int) -> bool:
        with self._lock:
            tat = self._last_tat.get(connection_id)
        return tat is None or tat < now

    def _remember(self, connection_id: str, tat: int | None) -> None:
        if tat is None:
            return
        with self._lock:
            self._last_tat[connection_id] = tat
            self._last_tat.move_to_end(connection_id)
            while len(self._last_tat) > self.REMEMBERED:
                self._last_tat.popitem(last=False)
