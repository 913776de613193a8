"""The circuit breaker's items in DynamoDB (moto): each state change is a conditional write
that a second writer holding the same old state loses."""

from __future__ import annotations

import pytest

from streamer import breaker, runtime
from streamer.circuit import MAX_COUNT_SHARDS, CircuitState, Counts, Policy, TrialSlot
from streamer.store import circuits

T0 = 1_000_000


@pytest.fixture
def bound(aws):
    runtime.current()  # binds the models to the test's tables


def test_counts_add_up_per_bucket_and_are_read_with_the_state(bound):
    circuits.add("report", 0, 7, Counts(5, 2), ttl=99)
    circuits.add("report", 0, 7, Counts(3, 3), ttl=99)
    circuits.add("report", 0, 6, Counts(1, 0), ttl=99)

    state, current, previous = circuits.read("report", 0, 7)

    assert state == CircuitState()
    assert (current, previous) == (Counts(8, 5), Counts(1, 0))
    assert circuits.read("other", 0, 7) == (CircuitState(), Counts(), Counts())


def test_sharded_counts_are_summed_and_shard_0_is_the_unsharded_key(bound):
    # GIVEN a bucket's counts in three items, shard 0 written as an unsharded release does
    circuits.add("report", 0, 7, Counts(5, 2), ttl=99)
    assert circuits.add("report", 0, 7, Counts(3, 3), ttl=99, shard=1) == Counts(3, 3)
    circuits.add("report", 0, 7, Counts(1, 1), ttl=99, shard=2)
    circuits.add("report", 0, 6, Counts(4, 0), ttl=99, shard=2)

    # THEN a read over the three shards sums each bucket, one over shard 0 alone does not
    state, current, previous = circuits.read("report", 0, 7, shards=3)
    assert (state, current, previous) == (CircuitState(), Counts(9, 6), Counts(4, 0))
    assert circuits.read("report", 0, 7) == (CircuitState(), Counts(5, 2), Counts())
    assert circuits.counts_key("report", 0, 7) == circuits.counts_key("report", 0, 7, 0)
    assert circuits.counts_key("report", 0, 7, 2) == "circuit#report#0#7#2"


def test_the_most_count_shards_fit_one_batch_get(bound):
    # 1 state item and two buckets of MAX_COUNT_SHARDS items: BatchGetItem's 100 keys
    shards = MAX_COUNT_SHARDS
    circuits.add("report", 0, 7, Counts(1, 1), ttl=99, shard=shards - 1)
    assert circuits.read("report", 0, 7, shards=shards)[1] == Counts(1, 1)
    assert 1 + 2 * shards <= 100


def test_only_one_writer_opens_a_closed_circuit(bound):
    closed = CircuitState()
    assert circuits.open_circuit("report", closed, T0)
    assert not circuits.open_circuit("report", closed, T0 + 1)
    assert circuits.read("report", 0, 0)[0] == CircuitState(0, T0, 0)


def test_trial_slots_are_taken_once_each_and_a_failed_trial_reopens(bound):
    circuits.open_circuit("report", CircuitState(), T0)
    opened = CircuitState(0, T0, 0)

    assert circuits.take_trial("report", opened, TrialSlot(0, restart=False), T0)
    # A second instance that read the same state loses the same slot.
    assert not circuits.take_trial("report", opened, TrialSlot(0, restart=False), T0)
    held = CircuitState(0, T0, 1)
    assert circuits.reopen_circuit("report", held, T0 + 5_000)
    assert not circuits.close_circuit("report", held, T0 + 6_000)  # it moved on
    assert circuits.read("report", 0, 0)[0] == CircuitState(0, T0 + 5_000, 0)


def test_stale_trials_restart_the_half_open_period(bound):
    circuits.open_circuit("report", CircuitState(), T0)
    for trials in range(2):
        circuits.take_trial("report", CircuitState(0, T0, trials), TrialSlot(trials, False), T0)

    assert circuits.take_trial(
        "report", CircuitState(0, T0, 2), TrialSlot(2, restart=True), T0 + 9_000
    )
    assert circuits.read("report", 0, 0)[0] == CircuitState(0, T0 + 9_000, 1)


def test_closing_starts_fresh_counts_under_a_new_epoch(bound):
    circuits.add("report", 0, 7, Counts(10, 10), ttl=99)
    circuits.open_circuit("report", CircuitState(), T0)

    assert circuits.close_circuit("report", CircuitState(0, T0, 1), T0 + 5_000)
    circuits.add("report", T0 + 5_000, 7, Counts(2, 0), ttl=99)

    # A reader that still knew the old epoch gets the new epoch's counts.
    state, current, _ = circuits.read("report", 0, 7)
    assert state == CircuitState(T0 + 5_000, None, 0)
    assert current == Counts(2, 0)


def test_adding_counts_answers_every_writers_totals_of_the_bucket(bound):
    assert circuits.add("report", 0, 7, Counts(5, 2), ttl=99) == Counts(5, 2)
    # A second instance's write answers both instances' counts.
    assert circuits.add("report", 0, 7, Counts(3, 3), ttl=99) == Counts(8, 5)


class _CountedReads:
    """The real store, counting the breaker's reads of it."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, action: str, epoch: int, bucket: int, shards: int = 1) -> tuple:
        self.reads += 1
        return circuits.read(action, epoch, bucket, shards)

    def __getattr__(self, name: str) -> object:
        return getattr(circuits, name)


def test_a_flush_decides_from_the_totals_it_wrote_without_reading_again(bound):
    store = _CountedReads()
    # Another instance's failures are already in the bucket.
    circuits.add("report", 0, T0 // 60_000, Counts(2, 2), ttl=99)
    instance = breaker.Breaker(
        Policy(window_s=60, failure_ratio=0.5, minimum_calls=3, open_s=30),
        store=store,
        clock=lambda: T0,
    )

    assert instance.permit("report").admitted
    instance.record("report", failed=True)
    instance.flush(force=True)

    assert store.reads == 1
    assert circuits.read("report", 0, T0 // 60_000)[0].open_until == T0 + 30_000
