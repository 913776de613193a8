"""The conversation's timing decisions: token expiry, rotation time, backoff, suspension."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.conversation import Options, token_expiry_ms
from client.conversation.timing import backoff_ms, rotation_at_ms, suspended_wait_ms


def jwt(claims: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.signature"


@pytest.mark.parametrize(
    ("token", "expiry"),
    [
        (jwt({"sub": "u", "exp": 1_800_000_000}), 1_800_000_000_000),
        (jwt({"sub": "u", "exp": 1.5}), 1_500),
        (jwt({"sub": "u"}), None),
        (jwt({"sub": "u", "exp": "soon"}), None),
        (jwt({"sub": "u", "exp": True}), None),
        ("not-a-jwt", None),
        ("a.%%%.c", None),
        ("a.bm90IGpzb24.c", None),
    ],
    ids=["exp", "fractional", "no-exp", "text-exp", "bool-exp", "opaque", "bad-base64", "no-json"],
)
def test_the_expiry_is_read_from_the_payload_without_verifying(token, expiry):
    # GIVEN a token / WHEN its expiry is read / THEN exp in ms, or None when it says nothing
    assert token_expiry_ms(token) == expiry


def test_rotation_comes_before_the_gateways_limit_and_before_the_tokens_exp():
    options = Options(max_connection_ms=7_200_000, rotate_before_ms=300_000)
    # GIVEN connections opened at 1000 s with tokens of various lives
    opened = 1_000_000
    long_lived = jwt({"exp": 1_000 + 86_400})
    short_lived = jwt({"exp": 1_000 + 600})
    expired = jwt({"exp": 900})
    # WHEN / THEN: the gateway's 2 h minus 5 min; the token's exp minus 5 min (at most half
    # its life); an already-expired token is ignored; an opaque token follows the gateway
    assert rotation_at_ms(options, opened, long_lived) == opened + 7_200_000 - 300_000
    assert rotation_at_ms(options, opened, short_lived) == opened + 600_000 - 300_000
    assert rotation_at_ms(options, opened, jwt({"exp": 1_000 + 60})) == opened + 30_000
    assert rotation_at_ms(options, opened, expired) == opened + 7_200_000 - 300_000
    assert rotation_at_ms(options, opened, "opaque") == opened + 7_200_000 - 300_000


@given(
    opened=st.integers(min_value=0, max_value=2**42),
    life_s=st.integers(min_value=1, max_value=10**6),
    max_connection_ms=st.integers(min_value=1, max_value=10**8),
    rotate_before_ms=st.integers(min_value=0, max_value=10**8),
)
def test_rotation_is_always_within_the_connections_life(
    opened, life_s, max_connection_ms, rotate_before_ms
):
    # GIVEN any connection / THEN it is replaced after it opened and before it must end
    options = Options(max_connection_ms=max_connection_ms, rotate_before_ms=rotate_before_ms)
    token = jwt({"exp": opened // 1000 + life_s})
    at = rotation_at_ms(options, opened, token)
    ends = min(opened + max_connection_ms, token_expiry_ms(token) or opened + max_connection_ms)
    assert opened <= at <= max(ends, opened)


@given(attempt=st.integers(min_value=0, max_value=10_000), draw=st.floats(0, 1))
def test_backoff_is_full_jitter_under_the_capped_exponential(attempt, draw):
    # GIVEN the default options / WHEN a wait is drawn / THEN it lies in [0, the cap]
    options = Options()
    wait = backoff_ms(options, attempt, draw)
    assert 0 <= wait <= min(options.max_delay_ms, options.initial_delay_ms * 2 ** min(attempt, 64))


@given(draw=st.floats(0, 1))
def test_suspended_retries_come_every_half_to_whole_interval(draw):
    # GIVEN the default 30 s / THEN a suspended wait is 15 to 30 s
    assert 15_000 <= suspended_wait_ms(Options(), draw) <= 30_000
