"""The per-connection token bucket (GCRA) as arithmetic, and its settings."""

from __future__ import annotations

import pytest

from streamer import config
from streamer.ratelimit import TokenBucket
from streamer.router import rate_limiter

NOW = 1_000_000
#: 10 a second (a token every 100 ms), 3 at once.
BUCKET = TokenBucket(rate_per_s=10, burst=3)


def us(ms: int) -> int:
    return ms * 1000


def test_the_bucket_arithmetic():
    now = us(NOW)
    assert (BUCKET.interval_us, BUCKET.tolerance_us) == (100_000, 200_000)
    assert BUCKET.admits(None, now) and BUCKET.admits(now + 200_000, now)
    assert not BUCKET.admits(now + 200_001, now)
    assert BUCKET.retry_after_ms(now + 300_000, now) == 100
    assert BUCKET.retry_after_ms(now + 200_001, now) == 1
    # rates keep their exact interval: 700 a second is not rounded to 1,000
    assert TokenBucket(rate_per_s=700, burst=1).interval_us == 1429
    assert TokenBucket(rate_per_s=3, burst=1).interval_us == 333_333
    for rate, burst in ((0, 3), (10, 0), (2_000_000, 3)):
        with pytest.raises(ValueError):
            TokenBucket(rate_per_s=rate, burst=burst)


def test_settings_out_of_range_do_not_break_the_router():
    # GIVEN a negative burst and an impossible rate in the environment
    settings = config.Settings.from_env(
        {config.RATE_LIMIT_PER_S: "5000000", config.RATE_LIMIT_BURST: "-3"}
    )

    # WHEN the router builds its limiter  THEN it gets the largest rate and the default burst
    limiter = rate_limiter(settings)
    assert limiter is not None
    assert (limiter.bucket.rate_per_s, limiter.bucket.burst) == (1_000_000, 1_000_000)
    assert rate_limiter(config.Settings.from_env({config.RATE_LIMIT_PER_S: "-1"})) is None
