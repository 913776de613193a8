"""The circuit breaker's decisions (pure, `streamer.circuit`) and one instance's breaker over a
fake store (`streamer.breaker`): when it opens, what it refuses, trials, closing, batching."""

from __future__ import annotations

from dataclasses import replace

from streamer import circuit
from streamer.breaker import Breaker
from streamer.circuit import CircuitState, Counts, Phase, Policy, TrialSlot
from streamer.store.errors import StoreUnavailable
from streamer.transitions import RETRY

POLICY = Policy(window_s=10, failure_ratio=0.5, minimum_calls=4, open_s=5, half_open_trials=2)
T0 = 1_000_000_000  # a bucket boundary (ms) of a 10 s window


# The decisions


def test_a_closed_circuit_opens_at_the_failure_ratio_once_enough_calls_were_made():
    assert not circuit.trips(Counts(calls=3, failures=3), POLICY)  # too few calls
    assert not circuit.trips(Counts(calls=10, failures=4), POLICY)
    assert circuit.trips(Counts(calls=10, failures=5), POLICY)


def test_a_failure_ratio_of_zero_turns_the_breaker_off():
    assert not circuit.trips(Counts(calls=100, failures=100), replace(POLICY, failure_ratio=0))


def test_the_window_weighs_the_previous_bucket_by_what_is_left_of_it():
    previous, current = Counts(10, 10), Counts(2, 0)
    at_start = circuit.window_counts(current, previous, T0, POLICY)
    three_quarters = circuit.window_counts(current, previous, T0 + 7_500, POLICY)
    assert at_start == Counts(12, 10)
    assert three_quarters == Counts(4.5, 2.5)


def test_an_open_circuit_refuses_until_it_half_opens_then_admits_its_trials():
    state = CircuitState(epoch=0, open_until=T0 + 5_000)

    refused = circuit.admission(state, T0 + 1_000, POLICY)
    half_open = circuit.admission(state, T0 + 5_000, POLICY)
    used_up = circuit.admission(replace(state, trials=2), T0 + 6_000, POLICY)

    assert (refused.admitted, refused.retry_after_ms) == (False, 4_000)
    assert half_open.admitted and half_open.trial
    assert not used_up.admitted and used_up.retry_after_ms == POLICY.open_ms


def test_trial_slots_run_out_and_come_back_when_their_trials_never_answered():
    state = CircuitState(open_until=T0)
    assert circuit.trial_slot(state, T0 - 1, POLICY) is None  # still open
    assert circuit.trial_slot(state, T0, POLICY) == TrialSlot(0, restart=False)
    assert circuit.trial_slot(replace(state, trials=2), T0 + 1, POLICY) is None
    assert circuit.trial_slot(replace(state, trials=2), T0 + 5_000, POLICY) == TrialSlot(
        2, restart=True
    )


def test_phases():
    assert circuit.phase(CircuitState(), T0) is Phase.CLOSED
    assert circuit.phase(CircuitState(open_until=T0 + 1), T0) is Phase.OPEN
    assert circuit.phase(CircuitState(open_until=T0), T0) is Phase.HALF_OPEN


def test_only_the_actions_own_failures_count_against_it():
    assert circuit.is_failure(RETRY, "PROCESSING_FAILED")
    assert circuit.is_failure("FAILED", "PROCESSING_FAILED")
    assert circuit.is_failure("FAILED", "TIMEOUT")
    assert not circuit.is_failure("FAILED", "VALIDATION_ERROR")
    assert not circuit.is_failure("CANCELLED", "CANCELLED")
    assert not circuit.is_failure("COMPLETED", None)


def test_a_deferred_request_waits_the_circuits_time_plus_at_most_a_tenth():
    verdict = circuit.Verdict(False, retry_after_ms=4_000)
    assert circuit.wait_ms(verdict, 0.0) == 4_000
    assert 4_000 <= circuit.wait_ms(verdict, 0.99) <= 4_400


# One instance's breaker, over a store kept in a dict


class FakeStore:
    """`streamer.store.circuits` in memory, counting its calls; `down` fails every call."""

    def __init__(self) -> None:
        self.states: dict[str, CircuitState] = {}
        self.counts: dict[tuple[str, int, int], Counts] = {}
        self.adds = 0
        self.reads = 0
        self.down = False

    @property
    def state(self) -> CircuitState:
        return self.states.get("report", CircuitState())

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("ProvisionedThroughputExceededException")

    def read(self, action, epoch, bucket, shards=1):
        self._check()
        self.reads += 1
        state = self.states.get(action, CircuitState())

        def summed(bucket):
            total = Counts()
            for shard in range(shards):
                total = total + self.counts.get((action, state.epoch, bucket, shard), Counts())
            return total

        return state, summed(bucket), summed(bucket - 1)

    def add(self, action, epoch, bucket, counts, ttl, shard=0):
        self._check()
        self.adds += 1
        key = (action, epoch, bucket, shard)
        self.counts[key] = self.counts.get(key, Counts()) + counts

    def open_circuit(self, action, read, open_until):
        self._check()
        state = self.states.get(action, CircuitState())
        if state.open_until is not None or state.epoch != read.epoch:
            return False
        self.states[action] = replace(state, open_until=open_until, trials=0)
        return True

    def take_trial(self, action, read, slot, now):
        self._check()
        state = self.states.get(action, CircuitState())
        if (state.open_until, state.trials) != (read.open_until, slot.trials_read):
            return False
        if slot.restart:
            self.states[action] = replace(state, open_until=now, trials=1)
        else:
            self.states[action] = replace(state, trials=slot.trials_read + 1)
        return True

    def close_circuit(self, action, read, now):
        self._check()
        if self.states.get(action, CircuitState()).open_until != read.open_until:
            return False
        self.states[action] = CircuitState(epoch=now, open_until=None, trials=0)
        return True

    def reopen_circuit(self, action, read, open_until):
        self._check()
        state = self.states.get(action, CircuitState())
        if state.open_until != read.open_until:
            return False
        self.states[action] = replace(state, open_until=open_until, trials=0)
        return True


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def breaker(store: FakeStore, clock: Clock) -> Breaker:
    return Breaker(POLICY, store=store, clock=clock, rng=lambda: 0.0)


def fail_for_seconds(b: Breaker, clock: Clock, seconds: int, per_second: int = 50) -> None:
    for _ in range(seconds):
        for _ in range(per_second):
            b.record("report", failed=True)
        clock.now += 1_000


def test_counts_are_written_at_most_once_a_second_whatever_the_request_rate():
    store, clock = FakeStore(), Clock(T0)
    b = breaker(store, clock)

    # 3 seconds of 1,000 successful runs a second
    for _ in range(3):
        for _ in range(1_000):
            b.record("report", failed=False)
        clock.now += 1_000

    assert store.adds <= 3
    assert store.reads <= 2 * 3
    b.flush(force=True)
    assert sum(c.calls for c in store.counts.values()) == 3_000


def test_sharded_counts_each_instance_adds_to_its_own_item_and_all_are_summed():
    # GIVEN an action's counts spread over 4 items, and 4 instances that drew each one
    store, clock = FakeStore(), Clock(T0)
    sharded = replace(POLICY, count_shards=4, minimum_calls=40)
    instances = [
        Breaker(sharded, store=store, clock=clock, rng=lambda n=n: n / 4 + 0.01) for n in range(4)
    ]

    # WHEN each one counts 10 failed runs a second (no single one reaches the minimum)
    for _ in range(2):
        for instance in instances:
            for _ in range(10):
                instance.record("report", failed=True)
        clock.now += 1_000
    for instance in instances:
        instance.flush(force=True)

    # THEN each wrote its own item of the bucket, one write a second, not the others'
    assert {shard for (_, _, _, shard) in store.counts} == {0, 1, 2, 3}
    assert [instance.count_shard for instance in instances] == [0, 1, 2, 3]
    # AND a read adds the items up: 80 failures of 80 calls, and the circuit opened
    _, current, _ = store.read("report", 0, clock.now // POLICY.window_ms, shards=4)
    assert current == Counts(80, 80)
    assert not instances[0].admission("report").admitted


def test_a_draw_of_one_never_picks_a_shard_past_the_last():
    policy = replace(POLICY, count_shards=3)
    assert Breaker(policy, store=FakeStore(), clock=Clock(T0), rng=lambda: 1.0).count_shard == 2


def test_an_action_failing_every_run_is_refused_within_the_window_and_others_are_not():
    store, clock = FakeStore(), Clock(T0)
    b = breaker(store, clock)

    fail_for_seconds(b, clock, 2)
    verdict = b.admission("report")

    assert not verdict.admitted and 0 < verdict.retry_after_ms <= POLICY.open_ms
    assert b.admission("other").admitted


def test_after_the_open_time_a_successful_trial_closes_it_with_fresh_counts():
    store, clock = FakeStore(), Clock(T0)
    b = breaker(store, clock)
    fail_for_seconds(b, clock, 2)

    clock.now = store.state.open_until
    first, second = b.permit("report"), b.permit("report")
    third = b.permit("report")
    assert first.trial and second.trial and not third.admitted

    b.record("report", failed=False, verdict=first)
    clock.now += circuit.VIEW_TTL_MS

    assert store.state.open_until is None and store.state.epoch > 0
    assert b.admission("report").admitted
    # The failures before it closed do not open it again.
    b.record("report", failed=False)
    assert store.state.open_until is None


def test_a_failed_trial_opens_it_again_for_an_open_time():
    store, clock = FakeStore(), Clock(T0)
    b = breaker(store, clock)
    fail_for_seconds(b, clock, 2)
    clock.now = store.state.open_until

    trial = b.permit("report")
    b.record("report", failed=True, verdict=trial)
    clock.now += circuit.VIEW_TTL_MS

    assert store.state.open_until == clock.now - circuit.VIEW_TTL_MS + POLICY.open_ms
    assert not b.admission("report").admitted


def test_the_breaker_lets_requests_through_when_its_store_is_down():
    store, clock = FakeStore(), Clock(T0)
    b = breaker(store, clock)
    store.down = True

    fail_for_seconds(b, clock, 2)

    assert b.admission("report").admitted and b.permit("report").admitted


def test_an_outage_of_its_store_costs_the_breaker_one_read_a_second_not_one_per_request():
    store, clock = FakeStore(), Clock(T0)
    b = breaker(store, clock)
    store.down = True
    reads = []
    failing_read = store.read

    def counted(*args):
        reads.append(args)
        return failing_read(*args)

    store.read = counted

    for _ in range(100):
        b.admission("report")
    clock.now += circuit.VIEW_TTL_MS
    b.admission("report")

    assert len(reads) == 2


def test_a_new_instances_first_second_of_sync_runs_costs_no_store_call():
    # GIVEN a fresh instance (the router's cold start: its first message is a sync run)
    store, clock = FakeStore(), Clock(T0)
    b = breaker(store, clock)

    # WHEN it runs sync requests during its first second
    for _ in range(5):
        verdict = b.permit_sync("echo")
        b.record("echo", failed=False, verdict=verdict)
        clock.now += 100

    # THEN nothing was read or written: they ran as under a closed circuit
    assert verdict.admitted
    assert (store.reads, store.adds) == (0, 0)

    # and once the second is over, the next run reads the circuit and writes the counts
    clock.now = T0 + circuit.VIEW_TTL_MS
    b.record("echo", failed=False, verdict=b.permit_sync("echo"))
    assert store.reads >= 1 and store.adds == 1
    b.flush(force=True)
    assert sum(c.calls for c in store.counts.values()) == 6


def test_a_new_instance_sees_an_open_circuit_for_async_admission_and_after_its_first_second():
    store, clock = FakeStore(), Clock(T0)
    fail_for_seconds(breaker(store, clock), clock, 2)

    # WHEN a new instance starts while the circuit is open
    fresh = breaker(store, clock)

    # THEN an async request is refused at once (a write would follow anyway, so the read is
    # not the cold path's), and sync runs are refused once its first second is over
    assert not fresh.admission("report").admitted
    later = breaker(store, clock)
    assert later.permit_sync("report").admitted
    clock.now += circuit.VIEW_TTL_MS
    assert not later.permit_sync("report").admitted


def test_a_run_counts_under_the_epoch_it_was_let_through_in_not_the_one_it_ends_in():
    # GIVEN a run let through while the circuit is in its first epoch
    store, clock = FakeStore(), Clock(T0)
    b = breaker(store, clock)
    verdict = b.permit("report")

    # WHEN the circuit closes again meanwhile (a new epoch, seen by this instance)
    closed_at = T0 + 500
    store.states["report"] = CircuitState(epoch=closed_at)
    clock.now += circuit.VIEW_TTL_MS
    assert b.admission("report").admitted

    # and the long run then fails
    b.record("report", failed=True, verdict=verdict)
    b.flush(force=True)

    # THEN its failure counts under the epoch it started in, never against the closed circuit
    assert {epoch for (_, epoch, _, _) in store.counts} == {0}
