"""Which progress reports go out and when (pure: the clock is passed in).

docs/protocol.md section 3: at most one `progress` per flush interval; the
first report, the first at or above the immediate percentage and 100 % go out
at once; the latest pending report goes out within one interval.
"""

from __future__ import annotations

from streamer.coalescer import Coalescer, Update

#: Binary fractions, so `now - last_sent` is exact at the boundaries.
INTERVAL = 0.25
IMMEDIATE = 90.0


def update(percentage: float) -> Update:
    return Update(percentage=percentage, message="", metadata=None, timestamp=0)


def started() -> Coalescer:
    """A coalescer that sent its first report at t=10."""
    coalescer = Coalescer(INTERVAL, IMMEDIATE)
    assert coalescer.offer(update(1), 10.0) is not None
    return coalescer


def test_the_first_report_goes_out_at_once() -> None:
    first = update(1)
    assert Coalescer(INTERVAL, IMMEDIATE).offer(first, 10.0) is first


def test_a_report_within_the_interval_is_held() -> None:
    coalescer = started()
    assert coalescer.offer(update(2), 10.125) is None
    assert coalescer.deadline() == 10.0 + INTERVAL


def test_a_report_exactly_one_interval_later_goes_out() -> None:
    coalescer = started()
    later = update(2)
    assert coalescer.offer(later, 10.0 + INTERVAL) is later
    assert coalescer.deadline() is None


def test_a_report_just_under_the_immediate_percentage_is_paced() -> None:
    coalescer = started()
    assert coalescer.offer(update(89.999), 10.01) is None


def test_the_first_report_at_exactly_the_immediate_percentage_goes_out_at_once() -> None:
    coalescer = started()
    crossing = update(90.0)
    assert coalescer.offer(crossing, 10.01) is crossing


def test_reports_above_the_threshold_after_the_crossing_are_paced_again() -> None:
    coalescer = started()
    assert coalescer.offer(update(91), 10.01) is not None
    assert coalescer.offer(update(95), 10.02) is None


def test_one_hundred_percent_always_goes_out_at_once() -> None:
    coalescer = started()
    assert coalescer.offer(update(95), 10.01) is not None
    done = update(100)
    assert coalescer.offer(done, 10.02) is done
    assert coalescer.offer(update(99.99), 10.03) is None


def test_the_held_report_falls_due_one_interval_after_the_last_sent() -> None:
    coalescer = started()
    held = update(2)
    coalescer.offer(held, 10.0625)
    assert coalescer.due(10.0 + INTERVAL - 2**-20) is None
    assert coalescer.due(10.0 + INTERVAL) is held
    assert coalescer.due(10.0 + 2 * INTERVAL) is None
    assert coalescer.deadline() is None


def test_a_newer_report_replaces_the_held_one() -> None:
    coalescer = started()
    coalescer.offer(update(2), 10.0625)
    newest = update(3)
    coalescer.offer(newest, 10.125)
    assert coalescer.drain() is newest
    assert coalescer.drain() is None


def test_a_sent_report_resets_the_interval() -> None:
    coalescer = started()
    coalescer.offer(update(2), 10.0625)
    assert coalescer.due(10.375) is not None
    coalescer.offer(update(3), 10.5)
    assert coalescer.deadline() == 10.375 + INTERVAL
    assert coalescer.due(10.5) is None


def test_nothing_is_due_or_pending_before_any_report() -> None:
    coalescer = Coalescer(INTERVAL, IMMEDIATE)
    assert coalescer.due(100.0) is None
    assert coalescer.deadline() is None
    assert coalescer.drain() is None
