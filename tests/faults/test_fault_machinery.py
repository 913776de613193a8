"""The fault machinery itself: killable workers, the command API, and its absence by default."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from local.functions import FunctionError, FunctionSpec
from local.isolation import IsolatedFunction
from tests.e2e.conftest import start_stack
from tests.faults.conftest import FaultRefused, FaultyStack

pytestmark = pytest.mark.faults


@pytest.fixture
def sleeper():
    spec = FunctionSpec("sleeper", "tests.faults.lambdas.sleep", timeout_s=2, concurrency=2)
    function = IsolatedFunction(spec, "us-east-1", "123456789012")
    yield function
    function.close()


def test_a_worker_process_is_reused_while_it_lives(sleeper: IsolatedFunction) -> None:
    first = sleeper.invoke({"seconds": 0})
    second = sleeper.invoke({"seconds": 0})

    assert first["pid"] == second["pid"]
    assert 0 < second["remaining_ms"] <= 2000


def test_a_killed_invocation_fails_as_lambda_reports_a_dead_runtime(
    sleeper: IsolatedFunction,
) -> None:
    # GIVEN an invocation running in a worker
    running = sleeper.submit({"seconds": 1.5})
    deadline = time.monotonic() + 10
    while not sleeper.running():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    [invocation] = sleeper.running()

    # WHEN it is killed
    assert sleeper.kill(invocation)

    # THEN it fails at once with Runtime.ExitError, and a new worker serves the next call
    with pytest.raises(FunctionError) as failed:
        running.result(timeout=1)
    assert failed.value.error_type == "Runtime.ExitError"
    assert "signal: killed" in failed.value.error_message
    assert [i.stopped for i in sleeper.stopped()] == ["killed"]
    assert sleeper.invoke({"seconds": 0})["remaining_ms"] > 0


def test_an_invocation_past_its_timeout_is_stopped(sleeper: IsolatedFunction) -> None:
    with pytest.raises(FunctionError) as failed:
        sleeper.invoke({"seconds": 30})

    assert failed.value.error_type == "TimeoutError"
    assert failed.value.error_message == "Task timed out after 2.00 seconds"
    assert [i.stopped for i in sleeper.stopped()] == ["timed out"]


def test_a_handler_error_comes_back_with_its_type_and_the_worker_stays():
    spec = FunctionSpec("failing", "tests.faults.lambdas.fail", timeout_s=5)
    function = IsolatedFunction(spec, "us-east-1", "123456789012")
    try:
        for _ in range(2):
            with pytest.raises(FunctionError) as failed:
                function.invoke({})
            assert (failed.value.error_type, failed.value.error_message) == (
                "ValueError",
                "no such thing",
            )
        assert function.stopped() == []
    finally:
        function.close()


def test_close_waits_for_running_invocations(sleeper: IsolatedFunction) -> None:
    running = sleeper.submit({"seconds": 0.5})
    closer = threading.Thread(target=sleeper.close)
    closer.start()
    closer.join(timeout=10)

    assert running.result(timeout=0)["remaining_ms"] > 0


@pytest.mark.parametrize(
    ("command", "fields", "status"),
    [
        ("claims", {"count": 0}, 400),
        ("claims", {"count": True}, 400),
        ("management", {"connection_id": "c", "status": 404}, 400),
        ("management", {"status": 429}, 400),
        ("redeliver", {"request_id": "r", "times": "3"}, 400),
        ("mapping", {"enabled": 1}, 400),
        ("kill", {"request_id": "no-such-request"}, 409),
        ("reboot", {}, 404),
    ],
)
def test_bad_fault_commands_are_refused_and_change_nothing(
    faulty_stack: FaultyStack, command: str, fields: dict, status: int
) -> None:
    before = faulty_stack.state()["armed"]

    with pytest.raises(FaultRefused) as refused:
        faulty_stack.fault(command, **fields)

    assert refused.value.status == status and refused.value.answer["message"]
    assert faulty_stack.state()["armed"] == before


def test_without_the_faults_flag_there_is_no_fault_api(tmp_path: Path) -> None:
    with start_stack(tmp_path) as stack:
        assert "faults_url" not in stack.ready
        for method, body in (("GET", None), ("POST", b'{"request_id": "r"}')):
            request = urllib.request.Request(
                f"{stack.http_url}_faults/kill", data=body, method=method
            )
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(request, timeout=10)
            assert answer.value.code == 404
            assert "fault" not in json.load(answer.value).get("message", "")
