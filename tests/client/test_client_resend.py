"""The resend decisions on their own: which refusals are resent, how long the client waits."""

from __future__ import annotations

import random

import pytest

from client.errors import ErrorInfo
from client.reconnect import ReconnectPolicy
from client.resend import Refusals, ResendLimits, given_up, is_resendable, resend_wait

POLICY = ReconnectPolicy(initial_delay=0.5, max_delay=4.0, multiplier=2.0)
LIMITS = ResendLimits(rate_limit_retries=3, unavailable_deadline=30.0, policy=POLICY)
BUCKET = {"limit_per_second": 20, "burst": 20}


class Highest(random.Random):
    """A random source that always draws the top of the range: the longest jitter."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Lowest(random.Random):
    """A random source that always draws the bottom of the range: no jitter."""

    def uniform(self, a: float, b: float) -> float:
        return a


def unavailable(retry_after_ms: int | None = 1000) -> ErrorInfo:
    details = {} if retry_after_ms is None else {"retry_after_ms": retry_after_ms}
    return ErrorInfo("UNAVAILABLE", "store unreachable", details, retryable=True)


@pytest.mark.parametrize(
    ("error", "resendable"),
    [
        (unavailable(), True),
        (ErrorInfo("RATE_LIMITED", "", BUCKET | {"retry_after_ms": 50}, True), True),
        (ErrorInfo("RATE_LIMITED", "", {"max_active_requests": 20}, True), False),
        (ErrorInfo("UNAVAILABLE", "", {"retry_after_ms": 50}, False), False),
        (ErrorInfo("CONFLICT", "", {}, True), False),
        (ErrorInfo("INTERNAL_ERROR", "", {}, False), False),
    ],
    ids=["unavailable", "bucket", "active-cap", "not-retryable", "conflict", "internal"],
)
def test_only_refusals_a_later_resend_can_pass_are_resent(error, resendable):
    # GIVEN a refusal / THEN it is resent only when sending the same message later may pass
    assert is_resendable(error) is resendable


def test_an_unavailable_resend_never_comes_before_retry_after():
    # GIVEN an UNAVAILABLE asking for 1.5 s, and no jitter drawn
    # WHEN the first resend is decided / THEN it waits exactly that long
    assert resend_wait(unavailable(1500), Refusals(0, 0.0), LIMITS, Lowest()) == 1.5


def test_without_retry_after_the_wait_is_at_least_a_quarter_second():
    assert resend_wait(unavailable(None), Refusals(0, 0.0), LIMITS, Lowest()) == 0.25


def test_the_jitter_grows_exponentially_and_is_capped():
    # GIVEN the longest jitter each time
    # WHEN resend after resend is decided (well inside the deadline)
    waits = [
        resend_wait(unavailable(0), Refusals(count, 0.0), LIMITS, Highest()) for count in range(6)
    ]
    # THEN above the floor it doubles each time, up to the policy's max_delay
    assert waits == [0.25 + jitter for jitter in (0.5, 1.0, 2.0, 4.0, 4.0, 4.0)]


def test_unavailable_is_resent_until_the_next_wait_would_pass_the_deadline():
    # GIVEN a deadline of 30 s and resends of 1 s (no jitter)
    # WHEN refused for 28.5 s so far / THEN one more resend fits, at 29.5 s
    assert resend_wait(unavailable(1000), Refusals(7, 28.5), LIMITS, Lowest()) == 1.0
    # WHEN refused for 29.5 s / THEN the next would come after 30 s: give up now
    assert resend_wait(unavailable(1000), Refusals(8, 29.5), LIMITS, Lowest()) is None


def test_a_zero_deadline_resends_nothing():
    limits = ResendLimits(rate_limit_retries=3, unavailable_deadline=0.0, policy=POLICY)
    assert resend_wait(unavailable(0), Refusals(0, 0.0), limits, Lowest()) is None


def test_the_rate_limit_is_resent_a_bounded_number_of_times_whatever_the_time():
    refused = ErrorInfo("RATE_LIMITED", "slow down", BUCKET | {"retry_after_ms": 100}, True)
    assert resend_wait(refused, Refusals(2, 999.0), LIMITS, Lowest()) == 0.25
    assert resend_wait(refused, Refusals(3, 0.0), LIMITS, Lowest()) is None


def test_the_given_up_error_keeps_the_code_and_details_and_says_how_long():
    # GIVEN an UNAVAILABLE refused 5 times over 29 s
    error = given_up(unavailable(1000), Refusals(5, 29.04))
    # THEN the caller's error is still UNAVAILABLE, retryable, with the server's details
    assert (error.code, error.retryable, error.details) == (
        "UNAVAILABLE",
        True,
        {"retry_after_ms": 1000},
    )
    assert error.message == "store unreachable (gave up after 5 refusals over 29.0 s)"
    # AND a single refusal is passed on as the server said it
    assert given_up(unavailable(), Refusals(1, 0.0)) == unavailable()
