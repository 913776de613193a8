"""The circuit breaker of each action: the decisions, over counts, stored state and time.

An action whose runs fail too often over a window has its circuit opened:
the router refuses new requests for it at once (`UNAVAILABLE`, retryable,
`details.retry_after_ms` until it half-opens) and the processor puts its
queued requests back to wait instead of running them into the same failure.
After the open time a few trial runs go through (half-open); the first to
succeed closes the circuit, one that fails opens it again.

Everything here is pure: what is stored (`CircuitState`, `Counts`) and the
clock come in, decisions come out. `streamer.breaker` keeps the counts and
talks to the store (`streamer.store.circuits`).

Counts are kept per action in buckets one window long; the failure ratio over
the last window is the sliding-window estimate: the current bucket plus the
previous one weighted by the part of it still inside the window (the
"sliding window counter" of rate limiters). Two buckets per action, whatever
the request rate, each spread over `Policy.count_shards` items.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from streamer.errors import ErrorCode
from streamer.transitions import RETRY, Status

#: Trial runs let through per half-open period.
HALF_OPEN_TRIALS = 3
#: The most items one bucket's counts may be spread over: a read takes the state and two
#: buckets' items in one BatchGetItem, which takes at most 100 keys (DynamoDB API
#: reference, BatchGetItem), so 1 + 2 * 49.
MAX_COUNT_SHARDS = 49
#: What an in-process view of a circuit may lag behind the store (ms).
VIEW_TTL_MS = 1000
#: A new instance runs sync requests without reading their circuits for this long (ms):
#: see `reads_before_sync_run`.
COLD_TRUST_MS = VIEW_TTL_MS
#: Error codes of an ended run that count as the action failing. A refused
#: payload, a cancel or a result too large are the caller's, not the action's.
FAILURE_CODES = frozenset(
    {ErrorCode.PROCESSING_FAILED, ErrorCode.TIMEOUT, ErrorCode.INTERNAL_ERROR}
)


class Phase(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Policy:
    """When a circuit opens and for how long (`streamer.config.Settings`)."""

    window_s: int = 60
    #: Failures / calls over the window at or above which it opens; 0 turns the breaker off.
    failure_ratio: float = 0.5
    #: Calls over the window below which it never opens, whatever failed.
    minimum_calls: int = 20
    open_s: int = 30
    half_open_trials: int = HALF_OPEN_TRIALS
    #: Items one bucket's counts are spread over. Every instance adds its counts to one
    #: of them (chosen when it starts) at most once a second, and reads them all: one
    #: item takes a write a second from each instance that adds to it, and DynamoDB
    #: serves at most 1,000 write units a second per partition key value, so an action
    #: run by more than 1,000 instances at once needs more than one.
    count_shards: int = 1

    @property
    def enabled(self) -> bool:
        return self.failure_ratio > 0

    @property
    def window_ms(self) -> int:
        return max(1, self.window_s) * 1000

    @property
    def open_ms(self) -> int:
        return max(1, self.open_s) * 1000


@dataclass(frozen=True)
class CircuitState:
    """The stored state of one action's circuit.

    `epoch` is when it last closed (0: never opened); counts are kept under
    it, so a closed circuit starts from fresh counts. `open_until` is set
    while it is open or half-open; `trials` counts the trial runs taken since.
    """

    epoch: int = 0
    open_until: int | None = None
    trials: int = 0


@dataclass(frozen=True)
class Counts:
    calls: float = 0
    failures: float = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.calls + other.calls, self.failures + other.failures)


def bucket_of(now: int, policy: Policy) -> int:
    """The index of the bucket `now` (ms) falls in."""
    return now // policy.window_ms


def window_counts(current: Counts, previous: Counts, now: int, policy: Policy) -> Counts:
    """Calls and failures over the window ending at `now`, from its two buckets."""
    into_current = (now % policy.window_ms) / policy.window_ms
    weight = 1 - into_current
    return Counts(
        current.calls + previous.calls * weight, current.failures + previous.failures * weight
    )


def trips(counts: Counts, policy: Policy) -> bool:
    """Whether these counts over the window open a closed circuit."""
    if not policy.enabled or counts.calls < max(1, policy.minimum_calls):
        return False
    return counts.failures / counts.calls >= policy.failure_ratio


def phase(state: CircuitState, now: int) -> Phase:
    if state.open_until is None:
        return Phase.CLOSED
    return Phase.OPEN if now < state.open_until else Phase.HALF_OPEN


def trials_stale(state: CircuitState, now: int, policy: Policy) -> bool:
    """Whether the trials of a half-open circuit went unanswered for an open time.

    A trial's runner may die before it reports: its slot is given again after
    an open time, so a circuit cannot stay half-open for ever.
    """
    return state.open_until is not None and now >= state.open_until + policy.open_ms


@dataclass(frozen=True)
class Verdict:
    """Whether a request for the action may go on, and if not, in how long to try again."""

    admitted: bool
    retry_after_ms: int = 0
    #: Admitted as one of a half-open circuit's trials: its result closes or reopens it.
    trial: bool = False
    #: For a trial that took its slot: the state it took it in, which its result's write checks.
    held: CircuitState | None = None
    #: The circuit's epoch the request was let through in (None: not read); its run's
    #: result counts under it, so runs from before a close never count against it.
    epoch: int | None = None


def admission(state: CircuitState, now: int, policy: Policy) -> Verdict:
    """The router's answer for a new request, on what it knows: no write.

    Open: refused until it half-opens. Half-open: admitted while trial slots
    are left (the run takes one, `trial_slot`), refused for an open time otherwise.
    """
    current = phase(state, now)
    if current is Phase.CLOSED:
        return Verdict(True)
    if current is Phase.OPEN:
        return Verdict(False, retry_after_ms=int(state.open_until or now) - now)
    if state.trials < policy.half_open_trials or trials_stale(state, now, policy):
        return Verdict(True, trial=True)
    return Verdict(False, retry_after_ms=policy.open_ms)


@dataclass(frozen=True)
class TrialSlot:
    """The conditional write that takes a trial slot of a half-open circuit.

    `restart`: the trials went stale, the half-open period starts again at
    `now` with this trial as its first; otherwise `trials` goes up by one if
    it is still `trials_read`.
    """

    trials_read: int
    restart: bool


def trial_slot(state: CircuitState, now: int, policy: Policy) -> TrialSlot | None:
    """The write that lets one trial run through a half-open circuit; None if none is left."""
    if phase(state, now) is not Phase.HALF_OPEN:
        return None
    if state.trials < policy.half_open_trials:
        return TrialSlot(state.trials, restart=False)
    if trials_stale(state, now, policy):
        return TrialSlot(state.trials, restart=True)
    return None


def is_failure(status: str, error_code: str | None) -> bool:
    """Whether a run that ended in `status` (or RETRY) counts against its action."""
    if status == RETRY:
        return True
    return status == Status.FAILED and error_code in FAILURE_CODES


def wait_ms(verdict: Verdict, jitter: float) -> int:
    """How long a queued request waits for a circuit that refused it, spread by `jitter` in [0, 1).

    Up to a tenth more than the circuit's own wait, so the requests of one
    outage do not all come back in the same instant.
    """
    return int(verdict.retry_after_ms * (1 + jitter / 10))


def reads_before_sync_run(instance_age_ms: int) -> bool:
    """Whether a sync run of an action this instance has no view of waits on a read of it.

    Not during an instance's first `COLD_TRUST_MS`: a sync run is answered on the
    message's critical path and, unlike an async request, costs no store call of its own,
    so on a new instance the read would be the only DynamoDB call of its first message
    (a client built and a round trip: most of the router's cold start, docs/benchmarks.md
    section 4). A new instance starts its circuits closed, as a per-process breaker does;
    the counts of those runs are kept and written after that time like any others. The
    cost: while a circuit is open, each new instance runs at most its first second of
    sync runs of the action (for a failing action that times out, one or two runs).
    """
    return instance_age_ms >= COLD_TRUST_MS
