"""Progress coalescing and the flusher's numbering, decided without the reporter's thread."""

from __future__ import annotations

import pytest

from streamer.progress import Coalescer, Update
from streamer.progress_flusher import MAX_UNPERSISTED_MESSAGES, ProgressFlusher, Snapshot


def update(percentage: float) -> Update:
    return Update(percentage=percentage, message=f"{percentage}%", metadata=None, timestamp=0)


def test_coalescer_sends_the_first_report_and_holds_the_next_within_the_interval():
    coalescer = Coalescer(interval_s=0.2, immediate_percent=90)
    assert coalescer.offer(update(1), now=0.0) == update(1)
    assert coalescer.offer(update(2), now=0.05) is None
    assert coalescer.offer(update(3), now=0.1) is None
    assert coalescer.deadline() == pytest.approx(0.2)
    assert coalescer.due(now=0.15) is None
    assert coalescer.due(now=0.2) == update(3)
    assert coalescer.due(now=0.5) is None


def test_coalescer_sends_the_threshold_crossing_and_100_percent_at_once():
    coalescer = Coalescer(interval_s=0.2, immediate_percent=90)
    coalescer.offer(update(10), now=0.0)
    assert coalescer.offer(update(90), now=0.01) == update(90)
    assert coalescer.offer(update(95), now=0.02) is None  # paced again after the crossing
    assert coalescer.offer(update(100), now=0.03) == update(100)


class FlakyStore:
    """A `persist` that fails while `down`, and records what it stored."""

    def __init__(self) -> None:
        self.down = False
        self.stored: list[Snapshot] = []

    def persist(self, snapshot: Snapshot) -> bool:
        if self.down:
            raise RuntimeError("store unavailable")
        self.stored.append(snapshot)
        return True


def flusher(store: FlakyStore, sent: list[dict]) -> ProgressFlusher:
    return ProgressFlusher(
        "r-1",
        publish=sent.append,
        persist=store.persist,
        is_cancelled=lambda: False,
        persist_interval_s=1.0,
        check_interval_s=0.2,
        start_seq=10,
        now=0.0,
    )


def test_the_flusher_numbers_from_the_start_seq_and_persists_once_an_interval():
    store, sent = FlakyStore(), []
    flush = flusher(store, sent)

    flush.send(update(10), now=0.1)
    flush.send(update(20), now=0.3)
    flush.tick(0.5)
    flush.tick(1.1)

    assert [m["seq"] for m in sent] == [11, 12]
    assert [(s.seq, s.percentage) for s in store.stored] == [(12, 20)]
    assert flush.wake_at(None) == pytest.approx(1.1 + 0.2)


def test_a_failed_persist_is_tried_again_and_sends_stop_at_the_unpersisted_bound():
    # GIVEN the store fails
    store, sent = FlakyStore(), []
    flush = flusher(store, sent)
    store.down = True

    # WHEN the handler reports far more than the bound
    for i in range(MAX_UNPERSISTED_MESSAGES + 5):
        flush.send(update(i), now=1.0 + i)

    # THEN no more than the bound went out past the persisted seq
    assert len(sent) == MAX_UNPERSISTED_MESSAGES
    # and once the store is back, the next interval persists what was sent
    store.down = False
    flush.tick(100.0)
    assert store.stored[-1].seq == 10 + MAX_UNPERSISTED_MESSAGES


class Checks:
    """Records which cancellation check the flusher made, and answers them."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.flagged = False
        self.marked = False

    def full(self) -> bool:
        self.made.append("request")
        return self.flagged

    def light(self) -> bool:
        self.made.append("marker")
        return self.marked


def checked_flusher(store: FlakyStore, checks: Checks) -> ProgressFlusher:
    return ProgressFlusher(
        "r-1",
        publish=lambda message: None,
        persist=store.persist,
        is_cancelled=checks.full,
        stop_asked=checks.light,
        persist_interval_s=1.0,
        # Binary fractions: times add up exactly.
        check_interval_s=0.25,
        start_seq=0,
        now=0.0,
    )


def test_between_persists_the_checks_ask_only_for_the_stop_marker():
    # GIVEN a handler reporting steadily, so its progress is persisted every second
    store, checks = FlakyStore(), Checks()
    flush = checked_flusher(store, checks)

    # WHEN two seconds go by, a report and a tick every 0.125 s
    for step in range(1, 17):
        now = step / 8
        flush.send(update(step), now)
        flush.tick(now)

    # THEN the persists were the full checks and every other check read only the marker
    assert len(store.stored) == 2
    assert checks.made and set(checks.made) == {"marker"}


def test_without_persists_the_request_is_read_once_a_persist_interval():
    # GIVEN a handler that never reports (nothing to persist)
    store, checks = FlakyStore(), Checks()
    flush = checked_flusher(store, checks)

    # WHEN two seconds go by
    for step in range(1, 17):
        flush.tick(step / 8)

    # THEN one check a second is the full check: a cancel whose marker was never written
    # (an older router, a failed write) is still seen within a persist interval
    assert checks.made == ["marker", "marker", "marker", "request"] * 2


@pytest.mark.parametrize("seen_by", ["marker", "request"])
def test_either_check_stops_the_attempt(seen_by):
    store, checks = FlakyStore(), Checks()
    flush = checked_flusher(store, checks)
    checks.marked = seen_by == "marker"
    checks.flagged = seen_by == "request"

    for step in range(1, 11):
        flush.tick(step / 8)

    assert flush.cancelled.is_set()
    # the marker at the first check; a flag alone at the first full check, after a second
    assert checks.made.index(seen_by) == (0 if seen_by == "marker" else 3)
