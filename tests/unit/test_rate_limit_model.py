"""What a client gains by spreading one connection's messages over router instances.

A model of N router instances, each deciding from its own `View` with
`streamer.ratelimit`'s pure functions, sharing one bucket the way the
connection record does (`charged` at each report, `reconcile` after it).
docs/security.md states the bound: over any stretch of time T, a connection
gets at most `burst + T / interval` messages admitted on one instance, as the
GCRA promises, and at most `(N - 1) * burst` more over N instances.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.ratelimit import (
    TokenBucket,
    View,
    charged,
    decide,
    reconcile,
    reported,
)


@dataclass
class Fleet:
    """Router instances serving one connection, and the shared bucket of its record."""

    bucket: TokenBucket
    instances: int
    shared: int | None = None
    views: list[View] = field(default_factory=list)
    admitted: list[int] = field(default_factory=list)
    reports: int = 0

    def __post_init__(self) -> None:
        self.views = [View() for _ in range(self.instances)]

    def message(self, instance: int, now_us: int) -> bool:
        decision = decide(self.bucket, self.views[instance], now_us)
        view = decision.view
        if decision.report:
            self.shared = charged(self.shared, view, self.bucket)
            self.reports += 1
            view = reconcile(reported(view), self.shared)
        self.views[instance] = view
        if decision.admitted:
            self.admitted.append(now_us)
        return decision.admitted


def allowed(bucket: TokenBucket, instances: int, span_us: int) -> int:
    """docs/security.md's bound on messages admitted within `span_us`."""
    return bucket.burst + span_us // bucket.interval_us + (instances - 1) * bucket.burst


def most_admitted_beyond_the_bound(fleet: Fleet) -> int:
    """The largest (admitted - allowed) over every stretch between two admissions."""
    times = fleet.admitted
    worst = -(10**9)
    for first in range(len(times)):
        for last in range(first, len(times)):
            count = last - first + 1
            worst = max(
                worst, count - allowed(fleet.bucket, fleet.instances, times[last] - times[first])
            )
    return worst


def run(fleet: Fleet, arrivals: list[tuple[int, int]]) -> Fleet:
    now = 0
    for gap_us, instance in arrivals:
        now += gap_us
        fleet.message(instance % fleet.instances, now)
    return fleet


buckets = st.builds(
    TokenBucket,
    rate_per_s=st.sampled_from([1, 3, 10, 20, 100]),
    burst=st.integers(1, 6),
)
#: Gaps between messages from none (a burst) to a few intervals of a slow bucket.
arrivals = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 0, 1_000, 10_000, 50_000, 100_000, 400_000, 2_000_000]),
        st.integers(0, 7),
    ),
    max_size=160,
)


@settings(max_examples=300, deadline=None)
@given(bucket=buckets, instances=st.integers(1, 6), arrivals=arrivals)
def test_spreading_over_n_instances_gains_at_most_n_minus_one_bursts(bucket, instances, arrivals):
    fleet = run(Fleet(bucket, instances), arrivals)

    assert most_admitted_beyond_the_bound(fleet) <= 0


@settings(max_examples=100, deadline=None)
@given(bucket=buckets, arrivals=arrivals)
def test_one_instance_is_exactly_the_token_bucket(bucket, arrivals):
    # The GCRA alone, with no sharing at all: what one router instance enforces.
    fleet = run(Fleet(bucket, 1), arrivals)
    tat = None
    expected = []
    now = 0
    for gap_us, _ in arrivals:
        now += gap_us
        if bucket.admits(tat, now):
            tat = max(now if tat is None else tat, now) + bucket.interval_us
            expected.append(now)

    assert fleet.admitted == expected


def test_the_bound_is_reached_by_fresh_instances_bursting_at_once():
    # GIVEN 4 instances that never saw the connection, a bucket of 5 at 10 a second
    bucket = TokenBucket(rate_per_s=10, burst=5)
    fleet = Fleet(bucket, 4)

    # WHEN the client sends 10 messages to each at one instant
    for instance in range(4):
        for _ in range(10):
            fleet.message(instance, 0)

    # THEN each admitted its own burst: 3 bursts more than one bucket holds, no more
    assert len(fleet.admitted) == 4 * 5 == allowed(bucket, 4, 0)


def test_after_the_reports_the_fleet_pays_the_spread_back():
    # GIVEN 4 instances that each admitted a burst at once (15 messages beyond the bucket)
    bucket = TokenBucket(rate_per_s=10, burst=5)
    fleet = Fleet(bucket, 4)
    for instance in range(4):
        for _ in range(5):
            fleet.message(instance, 0)

    # WHEN the client then sends to every instance, round robin, every 10 ms for 20 s
    for step in range(1, 2001):
        fleet.message(step % 4, step * 10_000)

    # THEN over the whole 20 s it got the rate and the 4 bursts, not 4 times the rate
    assert len(fleet.admitted) <= 5 + 20 * 10 + 3 * 5
    assert len(fleet.admitted) >= 20 * 10
    assert fleet.shared is not None


def test_a_client_under_the_rate_on_one_instance_reports_once_per_burst():
    bucket = TokenBucket(rate_per_s=20, burst=20)
    fleet = Fleet(bucket, 1)

    for n in range(60):
        assert fleet.message(0, n * 70_000)

    assert fleet.reports == 60 // 20
