"""External jobs: the poll backoff, as arithmetic."""

from __future__ import annotations

from streamer.processor import POLL_BACKOFF_CAP_MS, poll_backoff_ms


def test_the_poll_backoff_doubles_from_the_job_s_interval_up_to_a_cap():
    top, bottom = (lambda: 1.0), (lambda: 0.0)
    assert [poll_backoff_ms(2_000, n, top) for n in (1, 2, 3)] == [2_000, 4_000, 8_000]
    assert [poll_backoff_ms(2_000, n, bottom) for n in (1, 2, 3)] == [2_000, 2_000, 4_000]
    assert poll_backoff_ms(2_000, 30, top) == POLL_BACKOFF_CAP_MS
    # a job polled less often than the cap keeps its own interval
    assert poll_backoff_ms(600_000, 3, bottom) == 600_000
