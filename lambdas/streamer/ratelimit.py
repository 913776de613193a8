"""The per-connection message rate limit: a token bucket in each router instance,
reconciled with a shared bucket on the connection record once every `burst` messages.

The bucket is the generic cell rate algorithm (GCRA), a token bucket stored as
one number: its theoretical arrival time `tat`, the moment it would be full
again. It refills one token every `interval_us` and holds `burst` tokens. A
message arriving at `now` is admitted when `tat <= now + tolerance_us` (at
least one token left) and then takes a token: `tat = max(tat, now) + interval_us`.
Times are in microseconds, so any rate up to a million a second keeps its
exact interval.

Each router instance decides every message from its own `View` of a
connection's bucket, in memory, with no DynamoDB call: a flood on one instance
is refused at once, as before. The messages an instance admitted are reported
to the shared bucket on the connection record (`rate_tat`) when `report_every`
of them are unreported: one conditional write adds their tokens to the shared
`tat`, and the instance's view takes the shared `tat` it returns, which holds
every instance's reported messages. So a connection costs one write per
`report_every` admitted messages on an instance (the burst: one write per
second's worth at the default), a refused message costs nothing, and a client
whose messages land on several instances is caught up with once each of them
has reported. docs/security.md states the bound on what spreading gains, and
tests/unit/test_rate_limit_model.py checks it against this module's functions.

The decisions (`decide`, `charged`, `reconcile`, `reported`) are pure; `ConnectionRateLimiter`
keeps the views and makes the one write.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

from streamer import store
from streamer.store.errors import StoreUnavailable

US_PER_S = 1_000_000

log = logging.getLogger(__name__)


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

    @property
    def report_every(self) -> int:
        """Admitted messages an instance keeps to itself before it reports them: the burst.

        An instance that has not seen a connection admits a burst anyway, so reporting
        more often would not make spreading gain less than a burst per instance; less
        often, it would gain more (docs/security.md).
        """
        return self.burst

    def admits(self, tat: int | None, now_us: int) -> bool:
        """Whether a bucket whose theoretical arrival time is `tat` has a token at `now_us`."""
        return tat is None or tat <= now_us + self.tolerance_us

    def retry_after_ms(self, tat: int, now_us: int) -> int:
        """How long until a bucket at `tat` has a token again, in whole milliseconds."""
        return max(0, math.ceil((tat - self.tolerance_us - now_us) / 1000))


@dataclass(frozen=True)
class View:
    """What one router instance knows of a connection's bucket."""

    #: The bucket's `tat` as this instance sees it (µs): the shared one it last read,
    #: advanced by its own messages since. None: no token taken that it knows of.
    tat: int | None = None
    #: Messages this instance admitted and has not yet added to the shared bucket.
    unreported: int = 0
    #: The `tat` of the unreported messages alone, as if they had found an empty
    #: bucket; None when there are none.
    batch_tat: int | None = None

    def batch_start(self, bucket: TokenBucket) -> int:
        """The moment the unreported messages' tokens start to count: a shared `tat`
        at or past it takes them on top; one before it is overtaken by them."""
        assert self.batch_tat is not None
        return self.batch_tat - self.unreported * bucket.interval_us


@dataclass(frozen=True)
class Decision:
    admitted: bool
    view: View
    #: When refused: how long until the connection's next message would be admitted.
    retry_after_ms: int = 0
    #: Whether the view's unreported messages are to be added to the shared bucket now.
    report: bool = False


def _take(tat: int | None, now_us: int, bucket: TokenBucket) -> int:
    """A bucket's `tat` once a message at `now_us` took a token."""
    return (now_us if tat is None else max(tat, now_us)) + bucket.interval_us


def decide(bucket: TokenBucket, view: View, now_us: int) -> Decision:
    """Admit or refuse one message from an instance's view; say whether to report."""
    if not bucket.admits(view.tat, now_us):
        assert view.tat is not None
        wait = max(1, bucket.retry_after_ms(view.tat, now_us))
        return Decision(admitted=False, view=view, retry_after_ms=wait)
    taken = View(
        tat=_take(view.tat, now_us, bucket),
        unreported=view.unreported + 1,
        batch_tat=_take(view.batch_tat, now_us, bucket),
    )
    return Decision(admitted=True, view=taken, report=taken.unreported >= bucket.report_every)


def charged(shared_tat: int | None, view: View, bucket: TokenBucket) -> int:
    """The shared `tat` once the view's unreported messages are added to it.

    The GCRA over the shared bucket's messages, then these: they take their
    tokens on top of a shared `tat` at or past their `batch_start`, and an
    earlier one is overtaken by their own `batch_tat`. The store makes this one
    conditional write (`store.charge_bucket` in the first case,
    `store.refill_bucket` in the second).
    """
    assert view.batch_tat is not None
    if shared_tat is None or shared_tat < view.batch_start(bucket):
        return view.batch_tat
    return shared_tat + view.unreported * bucket.interval_us


def reconcile(view: View, shared_tat: int | None) -> View:
    """An instance's view once its reported messages are in a shared `tat` (None: no
    record, or no answer): the later of the two. Its messages admitted while the
    write was under way stay unreported."""
    tats = [t for t in (view.tat, shared_tat) if t is not None]
    return replace(view, tat=max(tats) if tats else None)


def reported(view: View) -> View:
    """The view once its unreported messages are handed to a report."""
    return replace(view, unreported=0, batch_tat=None)


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    #: When refused: how long until the connection's next message would be admitted.
    retry_after_ms: int = 0


ADMITTED = Verdict(admitted=True)


class ConnectionRateLimiter:
    """Admits or refuses each message of a connection: decided in memory, shared by reports."""

    #: Connections whose view this instance keeps (the least recently seen go first).
    REMEMBERED = 4096

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self._views: OrderedDict[str, View] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, connection_id: str, now_ms: int) -> Verdict:
        """Take a token of `connection_id`'s bucket at `now_ms`, or say how long to wait."""
        now = now_ms * 1000
        with self._lock:
            decision = decide(self.bucket, self._views.get(connection_id, View()), now)
            # Handed to this report at once: a message admitted meanwhile starts the next.
            self._keep(connection_id, reported(decision.view) if decision.report else decision.view)
        if not decision.admitted:
            return Verdict(admitted=False, retry_after_ms=decision.retry_after_ms)
        if decision.report:
            self._report(connection_id, decision.view)
        return ADMITTED

    def _report(self, connection_id: str, view: View) -> None:
        """Add the view's unreported messages to the shared bucket, then take its `tat`.

        A connection without a record (gone, or removed after a 410) has nothing to
        share. When DynamoDB is unavailable the messages are not reported, and the
        instance's own bucket is the limit (docs/security.md).
        """
        try:
            shared = self._charge(connection_id, view)
        except StoreUnavailable:
            log.warning("rate limit not shared: the store is unavailable")
            shared = None
        with self._lock:
            current = self._views.get(connection_id, reported(view))
            self._keep(connection_id, reconcile(current, shared))

    def _charge(self, connection_id: str, view: View) -> int | None:
        """`charged` as one conditional write when the guess is right; the shared `tat`
        after it, None when the connection has no record.

        The guess: the shared bucket is behind the batch when this instance's view
        is (its last report left nothing that outlasts these messages' own tokens).
        """
        start = view.batch_start(self.bucket)
        debt = view.unreported * self.bucket.interval_us
        overtaken = view.tat == view.batch_tat
        # A refill refused means `rate_tat` is at or past `start`, so a charge then holds
        # unless there is no record; a charge refused, then a refill raced by another
        # instance's charge, is tried once more as a charge.
        for refill in (True, False) if overtaken else (False, True, False):
            if refill:
                if store.refill_bucket(connection_id, start, debt):
                    return charged(None, view, self.bucket)
            else:
                shared = store.charge_bucket(connection_id, start, debt)
                if shared is not None:
                    return shared
        return None

    def _keep(self, connection_id: str, view: View) -> None:
        self._views[connection_id] = view
        self._views.move_to_end(connection_id)
        while len(self._views) > self.REMEMBERED:
            self._views.popitem(last=False)
