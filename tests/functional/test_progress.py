"""The progress reporter and its flusher thread: few messages, the latest always delivered."""

from __future__ import annotations

import threading
import time

import pytest

from streamer.errors import RequestCancelled
from streamer.progress import ProgressReporter


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[float, dict]] = []
        self.persisted: list = []
        self.lock = threading.Lock()

    def publish(self, message: dict) -> None:
        with self.lock:
            self.messages.append((time.monotonic(), message))

    def persist(self, snapshot) -> bool:
        self.persisted.append(snapshot)
        return True


def reporter(recorder: Recorder, **kwargs) -> ProgressReporter:
    options = {"flush_interval_s": 0.2, "immediate_percent": 90.0, "persist_interval_s": 1.0}
    options.update(kwargs)
    return ProgressReporter(
        "r-1",
        publish=recorder.publish,
        persist=recorder.persist,
        is_cancelled=lambda: False,
        **options,
    )


def test_a_thousand_reports_in_two_seconds_give_about_a_dozen_messages():
    # GIVEN a reporter with the default 200 ms interval
    recorder = Recorder()
    progress = reporter(recorder)

    # WHEN a handler reports 1,000 times over about 2 seconds
    started = time.monotonic()
    for i in range(1, 1001):
        progress.report(i / 10, f"step {i}")
        time.sleep(0.002)
    elapsed = time.monotonic() - started
    last_seq = progress.close()

    # THEN at most one message went out per 200 ms, plus the first report, the
    # 90 % crossing and 100 % (about 12 for exactly 2 s; a loaded machine
    # stretches the loop and so the count), in seq order, ending with 100 %
    messages = [m for _, m in recorder.messages]
    assert len(messages) <= int(elapsed / 0.2) + 3
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert last_seq == len(messages)
    assert messages[-1]["percentage"] == 100 and messages[-1]["message"] == "step 1000"


def test_the_latest_pending_report_goes_out_within_one_interval_when_the_handler_goes_quiet():
    recorder = Recorder()
    progress = reporter(recorder, flush_interval_s=0.1)
    progress.report(10, "first")
    reported_at = time.monotonic()
    progress.report(20, "second, held back")

    deadline = time.monotonic() + 2
    while len(recorder.messages) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    progress.close()

    sent_at, message = recorder.messages[1]
    assert message["percentage"] == 20
    assert sent_at - reported_at < 0.1 + 0.05


def test_close_flushes_what_is_pending():
    recorder = Recorder()
    progress = reporter(recorder, flush_interval_s=10)
    progress.report(10)
    progress.report(50, "pending")
    progress.close()
    assert [m["percentage"] for _, m in recorder.messages] == [10, 50]


def test_delivery_failures_never_reach_the_handler():
    def broken(message: dict) -> None:
        raise ConnectionError("network down")

    progress = ProgressReporter(
        "r-1",
        publish=broken,
        persist=lambda s: True,
        is_cancelled=lambda: False,
        flush_interval_s=0.01,
    )
    for i in range(50):
        progress.report(i)
    assert progress.close() > 0


def test_bad_percentages_are_ignored_and_values_clamped():
    recorder = Recorder()
    progress = reporter(recorder, flush_interval_s=0)
    progress.report(float("nan"))
    progress.report("x")  # type: ignore[arg-type]
    progress.report(150)
    progress.report(-5)
    progress.close()
    assert [m["percentage"] for _, m in recorder.messages] == [100, 0]


def test_progress_is_persisted_at_most_about_once_a_second():
    recorder = Recorder()
    progress = reporter(recorder, flush_interval_s=0.05, persist_interval_s=0.3)
    for i in range(100):
        progress.report(i * 0.9)
        time.sleep(0.01)
    progress.close()
    assert 1 <= len(recorder.persisted) <= 5
    assert [s.seq for s in recorder.persisted] == sorted(s.seq for s in recorder.persisted)


def test_a_cancelled_request_makes_report_raise():
    flag = threading.Event()
    progress = ProgressReporter(
        "r-1",
        publish=lambda m: None,
        persist=lambda s: True,
        is_cancelled=flag.is_set,
        flush_interval_s=0.05,
    )
    flag.set()
    deadline = time.monotonic() + 1
    while not progress.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(RequestCancelled):
        progress.report(50)
    progress.close()


def test_checkpoints_must_be_small_json():
    progress = reporter(Recorder())
    progress.checkpoint({"pages_done": 3})
    with pytest.raises(ValueError):
        progress.checkpoint({"blob": "x" * (40 * 1024)})
    with pytest.raises(TypeError):
        progress.checkpoint({"not": object()})
    progress.close()


def test_a_persist_stands_for_that_interval_s_cancellation_check():
    # GIVEN a handler reporting steadily, so progress is persisted every interval
    recorder = Recorder()
    checks = []
    progress = ProgressReporter(
        "r-1",
        publish=recorder.publish,
        persist=recorder.persist,
        is_cancelled=lambda: checks.append(1) or False,
        flush_interval_s=0.05,
        persist_interval_s=0.05,
    )
    for i in range(100):
        progress.report(i * 0.8)
        time.sleep(0.01)
    progress.close()

    # THEN the persists (conditional on no cancel) did most of the checking: few reads
    assert len(recorder.persisted) >= 5
    assert 2 * len(checks) < len(recorder.persisted), (len(checks), len(recorder.persisted))


def test_a_checkpoint_alone_is_persisted_by_the_flusher_thread():
    # GIVEN a handler that checkpoints but never reports
    recorder = Recorder()
    progress = reporter(recorder, flush_interval_s=0.02, persist_interval_s=0.05)

    # WHEN it checkpoints and carries on for a few persist intervals
    progress.checkpoint({"pages_done": 3})
    deadline = time.monotonic() + 2
    while not recorder.persisted and time.monotonic() < deadline:
        time.sleep(0.01)
    progress.close()

    # THEN the checkpoint reached the store, with nothing sent
    assert recorder.persisted[0].checkpoint == {"pages_done": 3}
    assert recorder.persisted[0].seq == 0 and recorder.messages == []
