"""The circuit breakers of one Lambda instance: cached views, batched counts, store at the edges.

The decisions are `streamer.circuit`'s; this keeps, per action, the last
view read from the store (`streamer.store.circuits`) for up to a second, and
the calls and failures counted since the last write.

Cost model. Per action and per instance, at most once a second: one
UpdateItem adding the counts (only if runs ended meanwhile, and not in the
instance's first second) and one BatchGetItem reading the state and two
buckets' count items (only if the action is used, and for sync runs not in
the instance's first second: `circuit.reads_before_sync_run`). So the writes
a second per action are at most the number of running instances, whatever
the request rate, spread over `Policy.count_shards` items (each instance
adds to the one it drew when it started); reads likewise, each of them
reading every item. Opening, each trial and closing are one conditional
write each, a few per outage. The counts are
written when the instance next handles the action after a second has passed:
an instance that goes idle keeps its last second's counts until its next
request, which delays an opening by at most that, never causes a wrong one.

The breaker never refuses because of its own store: if DynamoDB cannot be
read or written, the request goes on as if the circuit were closed.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from streamer import circuit, metrics
from streamer.circuit import CircuitState, Counts, Phase, Policy, Verdict
from streamer.config import Settings
from streamer.metric_names import CIRCUIT_OPEN
from streamer.protocol import now_ms
from streamer.store import circuits
from streamer.store.errors import StoreUnavailable

log = logging.getLogger(__name__)

#: Count items outlive their bucket by this much (s) past the window they serve.
COUNTS_TTL_MARGIN_S = 60


@dataclass(frozen=True)
class _View:
    read_at: int
    state: CircuitState
    counts: Counts
    #: The bucket the counts were read in and that bucket's and the previous one's counts
    #: (None if the store could not be read).
    bucket: int | None
    current: Counts
    previous: Counts


def policy_of(settings: Settings) -> Policy:
    return Policy(
        window_s=settings.circuit_window_s,
        failure_ratio=settings.circuit_failure_ratio,
        minimum_calls=settings.circuit_minimum_calls,
        open_s=settings.circuit_open_s,
        count_shards=settings.circuit_count_shards,
    )


class Breaker:
    """Every action's circuit as this instance sees it; safe to call from several threads."""

    def __init__(
        self,
        policy: Policy,
        store: ModuleType | object = circuits,
        clock: Callable[[], int] = now_ms,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self._store = store
        self._clock = clock
        self._rng = rng
        self._lock = threading.Lock()
        self._views: dict[str, _View] = {}
        self._pending: dict[tuple[str, int], Counts] = {}
        self._started = clock()
        #: The count item of each bucket this instance adds to (`Policy.count_shards`).
        self.count_shard = min(int(rng() * policy.count_shards), policy.count_shards - 1)
        # The first write waits a second like the others: a new instance's first message
        # does not pay for one.
        self._flushed_at = self._started

    # Before a request

    def admission(self, action: str) -> Verdict:
        """Whether a new request for `action` may be stored (the router's check; no write)."""
        if not self.policy.enabled:
            return Verdict(True)
        now = self._clock()
        view = self._view(action, now)
        if view is None:
            return Verdict(True)
        decided = circuit.admission(view.state, now, self.policy)
        # `replace(decided, epoch=...)`, without its per-call field walk (a sync message's).
        verdict = Verdict(
            admitted=decided.admitted,
            retry_after_ms=decided.retry_after_ms,
            trial=decided.trial,
            held=decided.held,
            epoch=view.state.epoch,
        )
        if not verdict.admitted:
            refused(action, verdict)
        return verdict

    def permit(self, action: str) -> Verdict:
        """Whether a run of `action` may start now; a half-open circuit's run takes a trial slot."""
        verdict = self.admission(action)
        if not verdict.admitted or not verdict.trial:
            return verdict
        now = self._clock()
        view = self._view(action, now)
        slot = None if view is None else circuit.trial_slot(view.state, now, self.policy)
        if view is None or slot is None:
            return Verdict(False, retry_after_ms=self.policy.open_ms)
        try:
            taken = self._store.take_trial(action, view.state, slot, now)
        except StoreUnavailable:
            return Verdict(True)
        self._forget(action)
        if not taken:
            return Verdict(False, retry_after_ms=self.policy.open_ms)
        held = CircuitState(
            epoch=view.state.epoch,
            open_until=now if slot.restart else view.state.open_until,
            trials=slot.trials_read + 1,
        )
        log.info("circuit trial", extra={"fields": {"action": action}})
        return Verdict(True, trial=True, held=held, epoch=view.state.epoch)

    def permit_sync(self, action: str) -> Verdict:
        """`permit` for a run the caller waits on; a new instance trusts an unread circuit
        closed for its first second (`circuit.reads_before_sync_run`)."""
        if not self.policy.enabled:
            return Verdict(True)
        now = self._clock()
        with self._lock:
            seen = action in self._views
        if not seen and not circuit.reads_before_sync_run(now - self._started):
            return Verdict(True)
        return self.permit(action)

    def wait_ms(self, verdict: Verdict) -> int:
        """How long a queued request refused by `verdict` waits before it is tried again."""
        return circuit.wait_ms(verdict, self._rng())

    # After a run

    def record(self, action: str, failed: bool, verdict: Verdict | None = None) -> None:
        """Count one ended run; a trial's result closes or reopens the circuit."""
        if not self.policy.enabled:
            return
        now = self._clock()
        # Counted under the epoch the run was let through in (its verdict's): runs from
        # before a close must not count against the closed circuit. A run let through
        # unread (`permit_sync` on a new instance) counts under the epoch this instance
        # knows, if any, else the first; counts under an epoch the circuit has left are
        # outside its window, never against it.
        epoch = verdict.epoch if verdict is not None else None
        if epoch is None:
            with self._lock:
                view = self._views.get(action)
            if view is None and circuit.reads_before_sync_run(now - self._started):
                view = self._view(action, now)
            epoch = view.state.epoch if view else 0
        key = (action, epoch)
        with self._lock:
            self._pending[key] = self._pending.get(key, Counts()) + Counts(1, int(failed))
        if verdict is not None and verdict.trial and verdict.held is not None:
            self._trial_ended(action, failed, verdict.held, now)
        self.flush(now)

    def flush(self, now: int | None = None, *, force: bool = False) -> None:
        """Write the counts kept since the last write, if a second has passed (or `force`)."""
        now = self._clock() if now is None else now
        with self._lock:
            due = force or now - self._flushed_at >= circuit.VIEW_TTL_MS
            if not due or not self._pending:
                return
            pending, self._pending = self._pending, {}
            self._flushed_at = now
        bucket = circuit.bucket_of(now, self.policy)
        ttl = now // 1000 + 2 * self.policy.window_s + COUNTS_TTL_MARGIN_S
        for (action, epoch), counts in pending.items():
            try:
                totals = self._store.add(action, epoch, bucket, counts, ttl, shard=self.count_shard)
            except StoreUnavailable:
                log.warning("circuit counts not written", extra={"fields": {"action": action}})
                continue
            if self.policy.count_shards > 1 and totals is not None:
                # The item written is one of the bucket's: its totals are not the bucket's.
                totals = self._with_own(action, epoch, bucket, counts)
            self._update_view(action, epoch, bucket, totals, now)
            self._open_if_tripped(action, now)

    # The store

    def _view(self, action: str, now: int) -> _View | None:
        with self._lock:
            view = self._views.get(action)
        if view is not None and now - view.read_at < circuit.VIEW_TTL_MS:
            return view
        epoch = view.state.epoch if view else 0
        bucket = circuit.bucket_of(now, self.policy)
        try:
            state, current, previous = self._store.read(
                action, epoch, bucket, self.policy.count_shards
            )
        except StoreUnavailable:
            log.warning("circuit state not read", extra={"fields": {"action": action}})
            # Kept for a second as if read, so an outage costs one read a second, not one
            # per request.
            state = view.state if view else CircuitState()
            view = _View(now, state, view.counts if view else Counts(), None, Counts(), Counts())
            with self._lock:
                self._views[action] = view
            return view
        counts = circuit.window_counts(current, previous, now, self.policy)
        view = _View(now, state, counts, bucket, current, previous)
        with self._lock:
            self._views[action] = view
        return view

    def _update_view(
        self, action: str, epoch: int, bucket: int, totals: Counts | None, now: int
    ) -> None:
        """Take the bucket's totals the write returned into the view, else forget the view.

        The write's answer holds every instance's counts of the current bucket, so
        the view it came from needs no second read if it was read in the same bucket
        under the same epoch: the previous bucket's counts no longer change (counts
        are written to the bucket they are flushed in), and the state keeps its age
        (`read_at` is unchanged, so it is read again when it would have been). A
        state changed meanwhile by another instance is caught where it matters: every
        change of state is a conditional write on the state read. Otherwise (another
        bucket or epoch, or a store that returns no totals) the view is forgotten and
        the next look reads the store, as before. This spares the first message of a
        new instance, and each flush, one BatchGetItem.
        """
        with self._lock:
            view = self._views.get(action)
            if totals is None or view is None or view.bucket != bucket or view.state.epoch != epoch:
                self._views.pop(action, None)
                return
            counts = circuit.window_counts(totals, view.previous, now, self.policy)
            self._views[action] = _View(
                view.read_at, view.state, counts, bucket, totals, view.previous
            )

    def _with_own(self, action: str, epoch: int, bucket: int, added: Counts) -> Counts | None:
        """The bucket's counts as last read plus the ones this instance just added, when
        its counts are spread over items: what the view would read, short of the other
        instances' adds since the read (which the next read, within a second, brings).
        None when there is no view of that bucket and epoch to add to."""
        with self._lock:
            view = self._views.get(action)
        if view is None or view.bucket != bucket or view.state.epoch != epoch:
            return None
        return view.current + added

    def _forget(self, action: str) -> None:
        with self._lock:
            self._views.pop(action, None)

    def _open_if_tripped(self, action: str, now: int) -> None:
        view = self._view(action, now)
        if view is None or circuit.phase(view.state, now) is not Phase.CLOSED:
            return
        if not circuit.trips(view.counts, self.policy):
            return
        try:
            opened = self._store.open_circuit(action, view.state, now + self.policy.open_ms)
        except StoreUnavailable:
            return
        self._forget(action)
        if opened:
            log.warning(
                "circuit opened",
                extra={
                    "fields": {
                        "action": action,
                        "calls": round(view.counts.calls),
                        "failures": round(view.counts.failures),
                        "open_s": self.policy.open_s,
                    }
                },
            )

    def _trial_ended(self, action: str, failed: bool, held: CircuitState, now: int) -> None:
        try:
            if failed:
                changed = self._store.reopen_circuit(action, held, now + self.policy.open_ms)
            else:
                changed = self._store.close_circuit(action, held, now)
        except StoreUnavailable:
            return
        self._forget(action)
        if changed:
            log.warning(
                "circuit reopened" if failed else "circuit closed",
                extra={"fields": {"action": action}},
            )


def refused(action: str, verdict: Verdict) -> None:
    """Count and log a request refused or put back by an open circuit."""
    metrics.count(CIRCUIT_OPEN, action=action)
    log.warning(
        "circuit open",
        extra={"fields": {"action": action, "retry_after_ms": verdict.retry_after_ms}},
    )


_breakers: dict[Policy, Breaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(settings: Settings) -> Breaker:
    """The instance's one breaker for these settings, shared by the router and the processor."""
    policy = policy_of(settings)
    with _breakers_lock:
        if policy not in _breakers:
            _breakers[policy] = Breaker(policy)
        return _breakers[policy]


def reset() -> None:
    """Forget the instance's breakers (with the runtime, `streamer.runtime.reset`)."""
    with _breakers_lock:
        _breakers.clear()
