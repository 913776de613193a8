"""The HTTP API's long poll, decided over a fake clock and fake reads."""

from __future__ import annotations

import copy

import pytest

from streamer.entry import http as http_entry
from streamer.models import RequestItem


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def item(status: str = "PROCESSING", progress: float = 10, seq: int = 1) -> RequestItem:
    return RequestItem("k", status=status, progress=progress, seq=seq, request_id="r-1")


def test_a_long_poll_returns_as_soon_as_the_state_changes():
    clock = FakeClock()
    reads = iter([item(), item(), item(progress=20, seq=2)])

    latest = http_entry.long_poll(item(), 10, lambda: next(reads), clock=clock, sleep=clock.sleep)

    assert latest.progress == 20 and clock.now == pytest.approx(0.75)


def test_a_long_poll_without_change_returns_the_same_state_after_the_wait():
    clock = FakeClock()
    latest = http_entry.long_poll(
        item(), 2, lambda: copy.copy(item()), clock=clock, sleep=clock.sleep
    )
    assert (latest.status, latest.seq) == ("PROCESSING", 1) and clock.now == pytest.approx(2)


def test_a_long_poll_on_an_ended_request_returns_at_once():
    clock = FakeClock()
    latest = http_entry.long_poll(
        item("COMPLETED"), 10, lambda: pytest.fail("read"), clock=clock, sleep=clock.sleep
    )
    assert latest.status == "COMPLETED" and clock.now == 0
