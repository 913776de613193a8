"""A sync handler's deadline (`streamer.deadline`): inline on the main thread, as Lambda's
runtime calls handlers, and on a worker thread elsewhere."""

from __future__ import annotations

import concurrent.futures
import signal
import threading
import time

import pytest

from streamer.deadline import DeadlineExceeded, run_within


@pytest.fixture
def pool():
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


def test_on_the_main_thread_the_call_runs_inline_and_its_result_comes_back(pool):
    ran_on = []

    result = run_within(lambda: ran_on.append(threading.current_thread()) or 42, 2.0, pool)

    assert result == 42
    assert ran_on == [threading.main_thread()]
    # The timer is cleared, and a signal arriving late (the timer fired as the call
    # returned) is ignored.
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    signal.raise_signal(signal.SIGALRM)


def test_on_the_main_thread_a_call_past_its_deadline_is_stopped(pool):
    after_sleep = []

    def overruns():
        try:
            time.sleep(5)
            after_sleep.append("went on")
        except Exception:  # a handler's own catch-all must not swallow the deadline
            after_sleep.append("swallowed")

    with pytest.raises(DeadlineExceeded):
        run_within(overruns, 0.05, pool)

    assert after_sleep == []
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_handlers_own_exception_passes_through_unchanged(pool):
    def fails():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_within(fails, 1.0, pool)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_off_the_main_thread_it_runs_on_the_pool_and_the_caller_stops_waiting(pool):
    outcomes = []

    def from_another_thread():
        try:
            run_within(lambda: time.sleep(1), 0.05, pool)
        except DeadlineExceeded:
            outcomes.append("deadline")
        outcomes.append(run_within(lambda: threading.current_thread().name, 2.0, pool))

    caller = threading.Thread(target=from_another_thread)
    caller.start()
    caller.join()

    assert outcomes[0] == "deadline"
    assert outcomes[1] != caller.name


def test_a_call_opted_out_of_inline_runs_on_the_pool_and_runs_on_past_its_deadline(pool):
    ended = threading.Event()
    ran_on = []

    def call():
        ran_on.append(threading.current_thread())
        time.sleep(0.2)
        ended.set()

    # WHEN a call from the main thread that must not be interrupted overruns its deadline
    with pytest.raises(DeadlineExceeded):
        run_within(call, 0.05, pool, inline=False)

    # THEN the caller stopped waiting, while the call ran on a worker thread to its end
    assert not ended.is_set()
    assert ended.wait(2)
    assert ran_on and ran_on[0] is not threading.main_thread()
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_no_time_left_is_a_deadline_passed_without_running(pool):
    ran = []
    with pytest.raises(DeadlineExceeded):
        run_within(lambda: ran.append(1), 0, pool)
    assert ran == []


def test_a_replaced_sigalrm_handler_is_put_back_before_the_next_deadline(pool):
    # GIVEN something in the process set SIGALRM back to its default (which ends the process)
    run_within(lambda: None, 1.0, pool)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)

    # WHEN the next call overruns, THEN it is stopped by the deadline, not by the signal
    with pytest.raises(DeadlineExceeded):
        run_within(lambda: time.sleep(5), 0.05, pool)
