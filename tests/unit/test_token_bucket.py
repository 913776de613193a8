"""The rate limit's bucket arithmetic (pure: the GCRA over numbers, no store).

A bucket of `burst` tokens refilling `rate_per_s` a second admits a message
while its theoretical arrival time `tat` is at most `now + interval * (burst - 1)`.
"""

from __future__ import annotations

import pytest

from streamer.ratelimit import US_PER_S, TokenBucket

BUCKET = TokenBucket(rate_per_s=10, burst=3)  # one token each 100 ms, three at once


def test_a_token_comes_back_each_interval() -> None:
    assert BUCKET.interval_us == 100_000
    assert TokenBucket(rate_per_s=3, burst=1).interval_us == 333_333
    assert TokenBucket(rate_per_s=700, burst=1).interval_us == 1429


def test_the_tolerance_is_the_burst_less_one_interval() -> None:
    assert BUCKET.tolerance_us == 200_000
    assert TokenBucket(rate_per_s=10, burst=1).tolerance_us == 0


def test_an_empty_record_always_has_a_token() -> None:
    assert BUCKET.admits(None, 0)


def test_a_message_is_admitted_at_exactly_the_tolerance_and_refused_one_microsecond_past() -> None:
    now = 5_000_000
    assert BUCKET.admits(now + 200_000, now)
    assert not BUCKET.admits(now + 200_001, now)
    assert BUCKET.admits(now - 1, now)


def test_the_wait_is_rounded_up_to_whole_milliseconds_and_never_negative() -> None:
    now = 5_000_000
    assert BUCKET.retry_after_ms(now + 200_001, now) == 1
    assert BUCKET.retry_after_ms(now + 300_000, now) == 100
    assert BUCKET.retry_after_ms(now + 300_500, now) == 101
    assert BUCKET.retry_after_ms(now + 200_000, now) == 0
    assert BUCKET.retry_after_ms(now, now) == 0


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(0, 1), (-1, 1), (US_PER_S + 1, 1), (10, 0), (10, -3)],
)
def test_a_bucket_out_of_range_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="token bucket needs"):
        TokenBucket(rate_per_s=rate, burst=burst)


@pytest.mark.parametrize(("rate", "burst"), [(US_PER_S, 1), (0.5, 1), (1, 1)])
def test_the_extremes_of_the_range_are_buckets(rate: float, burst: int) -> None:
    assert TokenBucket(rate_per_s=rate, burst=burst).interval_us >= 1


def test_the_wait_is_counted_in_milliseconds_of_1000_microseconds() -> None:
    assert BUCKET.retry_after_ms(200_000 + 1_001_000, 0) == 1001


def test_a_bucket_out_of_range_says_what_a_bucket_needs() -> None:
    with pytest.raises(ValueError) as raised:
        TokenBucket(rate_per_s=0, burst=1)
    assert str(raised.value) == (
        "a token bucket needs a rate from above 0 to 1,000,000 a second and a burst of at least 1"
    )


# An instance's view of a connection's bucket (`decide`, `reconcile`, `reported`).


def test_a_refused_message_is_told_the_exact_wait_and_keeps_the_view() -> None:
    from streamer.ratelimit import View, decide

    now = 5_000_000
    # One microsecond past the tolerance: the next token is 1 us away, told as 1 ms.
    view = View(tat=now + 200_001, unreported=2, batch_tat=now + 100_000)
    decision = decide(BUCKET, view, now)
    assert decision.admitted is False
    assert decision.retry_after_ms == 1
    assert decision.view == view and decision.report is False

    # 150 ms past the tolerance: 150 ms.
    later = decide(BUCKET, View(tat=now + 350_000), now)
    assert (later.admitted, later.retry_after_ms) == (False, 150)


def test_a_view_with_no_shared_or_own_tat_stays_without_one() -> None:
    from streamer.ratelimit import View, reconcile

    assert reconcile(View(), None).tat is None
    assert reconcile(View(tat=7), None).tat == 7
    assert reconcile(View(), 9).tat == 9
    assert reconcile(View(tat=7), 9).tat == 9


def test_a_reported_view_has_nothing_left_to_report() -> None:
    from streamer.ratelimit import View, reported

    view = View(tat=500, unreported=3, batch_tat=400)
    assert reported(view) == View(tat=500, unreported=0, batch_tat=None)
