"""Functions in worker processes: one invocation per execution environment, as Lambda runs them."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Awaitable

import pytest

from local.channel import Channel
from local.functions import EncodedEvent, FunctionError, FunctionSpec
from local.isolation import IsolatedFunction, _unwatch, _Worker
from tests.e2e.wire import run

REGION, ACCOUNT = "eu-west-1", "111122223333"


def isolated(handler: str, **spec: object) -> IsolatedFunction:
    settings = {"timeout_s": 10, "memory_mb": 256, **spec}
    return IsolatedFunction(FunctionSpec("streamer-test", handler, **settings), REGION, ACCOUNT)


@pytest.fixture
def remember():
    function = isolated("tests.local.lambdas.remember", concurrency=2)
    yield function
    function.close()


def test_the_handler_gets_the_event_and_a_context_rebuilt_in_its_worker(remember) -> None:
    answer = remember.invoke({"hello": ["world"]})

    assert answer["event"] == {"hello": ["world"]}
    assert answer["function_name"] == "streamer-test"
    assert answer["invoked_function_arn"] == (
        "arn:aws:lambda:eu-west-1:111122223333:function:streamer-test"
    )
    assert answer["memory_limit_in_mb"] == "256"
    assert len(answer["aws_request_id"]) == 36
    assert 0 < answer["remaining_ms"] <= 10_000


def test_an_encoded_event_reaches_the_worker_decoded_once(remember) -> None:
    # GIVEN a warm environment the event loop sends to (the gateway's path), and one
    # through the thread pool
    remember.invoke({})
    text = EncodedEvent('{"hello": ["world"]}')

    # WHEN an event already written as JSON is invoked either way
    from_loop = run(remember.invoke_async(text))
    from_thread = remember.invoke(text)

    # THEN the handler gets its object both times
    assert from_loop["event"] == from_thread["event"] == {"hello": ["world"]}


def test_a_warm_environment_serves_the_next_invocation_with_its_module_state(remember) -> None:
    first = remember.invoke({})
    second = remember.invoke({})

    assert second["pid"] == first["pid"]
    assert (first["invocations"], second["invocations"]) == (1, 2)
    assert second["aws_request_id"] != first["aws_request_id"]
    assert remember.cold_starts == 1


def test_concurrent_invocations_each_get_an_environment_of_their_own(remember) -> None:
    async def both() -> list:
        return await asyncio.gather(*(remember.invoke_async({"seconds": 1}) for _ in range(2)))

    first, second = run(both())

    # Two processes, each with its own module state: neither saw the other's invocation.
    assert first["pid"] != second["pid"]
    assert first["invocations"] == second["invocations"] == 1
    assert remember.cold_starts == 2
    assert sorted(remember.worker_pids()) == sorted([first["pid"], second["pid"]])


def test_no_more_environments_than_the_concurrency(remember) -> None:
    async def many() -> list:
        return await asyncio.gather(*(remember.invoke_async({"seconds": 0.2}) for _ in range(6)))

    answers = run(many())

    assert len({answer["pid"] for answer in answers}) <= 2
    assert sum(answer["invocations"] == 1 for answer in answers) <= 2
    assert remember.cold_starts <= 2


def test_the_reserved_concurrency_throttles_in_processes_too() -> None:
    function = isolated("tests.local.lambdas.remember", concurrency=2, reserved_concurrency=1)
    try:
        first = function.submit({"seconds": 1})
        with pytest.raises(FunctionError) as throttled:
            function.submit({}).result(timeout=5)
        assert throttled.value.error_type == "TooManyRequestsException"
        assert first.result(timeout=10)["invocations"] == 1
    finally:
        function.close()


@pytest.mark.parametrize(
    ("status", "cause"), [(3, "exit status 3"), (-9, "signal: killed")], ids=["exit", "signal"]
)
def test_a_worker_that_dies_fails_its_invocation_as_lambda_reports_it(
    status: int, cause: str
) -> None:
    handler = "tests.local.lambdas.exit_with" if status > 0 else "tests.local.lambdas.remember"
    function = isolated(handler)
    try:
        if status > 0:
            running = function.submit({"status": status})
        else:
            # A worker killed from outside mid-invocation (as the OOM killer would).
            running = function.submit({"seconds": 5})
            while not function.running():
                time.sleep(0.01)
            [invocation] = function.running()
            invocation.worker.kill()
        with pytest.raises(FunctionError) as failed:
            running.result(timeout=10)
        assert failed.value.error_type == "Runtime.ExitError"
        assert failed.value.error_message.endswith(f"Error: Runtime exited with error: {cause}")
        assert failed.value.error_message.startswith("RequestId: ")
    finally:
        function.close()


def test_after_a_crash_the_next_invocation_gets_a_new_environment() -> None:
    function = isolated("tests.local.lambdas.exit_with")
    try:
        with pytest.raises(FunctionError):
            function.invoke({"status": 1})
        with pytest.raises(FunctionError):
            function.invoke({"status": 1})
        assert function.cold_starts == 2
    finally:
        function.close()


def test_a_handler_that_cannot_be_imported_fails_with_lambdas_init_error() -> None:
    function = isolated("tests.local.no_such_module.handler")
    try:
        with pytest.raises(FunctionError) as failed:
            function.invoke({})
    finally:
        function.close()
    assert failed.value.error_type == "Runtime.ImportModuleError"
    assert failed.value.error_message.startswith(
        "Unable to import module 'tests.local.no_such_module': "
    )


def test_an_answer_lambda_cannot_serialise_is_the_handlers_error() -> None:
    function = isolated("tests.local.lambdas.unserialisable")
    try:
        with pytest.raises(FunctionError) as failed:
            function.invoke({})
        assert failed.value.error_type == "TypeError"
        assert "not JSON serializable" in failed.value.error_message
        # The environment survives its handler's error.
        assert function.cold_starts == 1
    finally:
        function.close()


def test_close_stops_every_worker(remember) -> None:
    remember.invoke({})
    [pid] = remember.worker_pids()

    remember.close()

    assert remember.worker_pids() == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_warm_environment_invoked_from_the_event_loop_fails_as_lambda_reports_it() -> None:
    # GIVEN a warm environment (the loop then talks to it directly, with no thread between)
    function = isolated("tests.local.lambdas.remember_or_exit", timeout_s=1)
    try:
        first = run(function.invoke_async({}))

        # WHEN it answers, then exits mid-invocation, then outlives its timeout
        second = run(function.invoke_async({}))
        with pytest.raises(FunctionError) as died:
            run(function.invoke_async({"status": 3}))
        run(function.invoke_async({}))
        with pytest.raises(FunctionError) as late:
            run(function.invoke_async({"seconds": 5}))
    finally:
        function.close()

    # THEN the warm one kept its state, and each failure is worded as Lambda words it
    assert (second["pid"], second["invocations"]) == (first["pid"], 2)
    assert died.value.error_type == "Runtime.ExitError"
    assert died.value.error_message.endswith("Runtime exited with error: exit status 3")
    assert (late.value.error_type, late.value.error_message) == (
        "TimeoutError",
        "Task timed out after 1.00 seconds",
    )
    assert [i.stopped for i in function.stopped()] == ["timed out"]


def test_each_invocation_from_the_loop_is_stopped_at_its_own_timeout() -> None:
    # GIVEN a warm environment of a function with a 1 s timeout, invoked from one loop
    function = isolated("tests.local.lambdas.remember", concurrency=1, timeout_s=1)
    try:
        run(function.invoke_async({}))

        async def three_in_a_row() -> tuple[dict, dict, FunctionError, float]:
            # WHEN one answers at once, the next begins half a second later and runs
            # 0.8 s (past the first one's deadline, within its own), and a third runs on
            first = await function.invoke_async({})
            await asyncio.sleep(0.5)
            second = await function.invoke_async({"seconds": 0.8})
            started = time.monotonic()
            with pytest.raises(FunctionError) as late:
                await function.invoke_async({"seconds": 5})
            return first, second, late.value, time.monotonic() - started

        first, second, late, late_after_s = run(three_in_a_row())
    finally:
        function.close()

    # THEN the second answered: the first one's deadline did not stop it; and the third
    # was stopped at its own timeout, not before
    assert second["pid"] == first["pid"]
    assert second["invocations"] == first["invocations"] + 1
    assert (late.error_type, late.error_message) == (
        "TimeoutError",
        "Task timed out after 1.00 seconds",
    )
    assert late_after_s >= 1.0
    assert [i.stopped for i in function.stopped()] == ["timed out"]


def test_a_warm_environment_has_its_event_before_the_event_loop_turns(tmp_path) -> None:
    # GIVEN a warm environment of a function the event loop invokes (the gateway's path)
    function = isolated("tests.local.lambdas.mark_started", concurrency=1)
    started = tmp_path / "started"
    try:
        run(function.invoke_async({"started": str(tmp_path / "cold")}))

        async def begin_then_block() -> tuple[bool, dict]:
            # WHEN the invocation begins and the loop does not turn until the worker ran it
            invocation = function.begin({"started": str(started)})
            for _ in range(1000):
                if started.exists():
                    break
                time.sleep(0.01)
            ran_meanwhile = started.exists()
            return ran_meanwhile, await invocation

        ran_meanwhile, answer = run(begin_then_block())
    finally:
        function.close()

    # THEN the worker had the event already: the loop's turn was not needed to send it
    assert ran_meanwhile
    assert answer["invocations"] == 2
    assert function.cold_starts == 1


def _voluntary_switches(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError(f"no context switch count for {pid}")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's /proc")
def test_a_warm_environment_sleeps_once_an_invocation_not_again_when_its_reply_is_read() -> None:
    # GIVEN a warm environment the event loop invokes, one invocation after another
    function = isolated("tests.local.lambdas.remember", concurrency=1)
    invocations = 200

    async def one_after_another() -> None:
        for _ in range(invocations):
            await function.invoke_async({})

    try:
        pid = function.invoke({})["pid"]
        # WHEN it serves them
        before = _voluntary_switches(pid)
        run(one_after_another())
        slept = _voluntary_switches(pid) - before
    finally:
        function.close()

    # THEN it went to sleep about once an invocation, waiting for the next: not a second
    # time, woken for nothing when the stack read its reply and freed room on the socket
    assert slept < 1.25 * invocations, slept


def test_an_invocation_whose_task_is_cancelled_before_it_ran_ends_and_frees_its_worker() -> None:
    # GIVEN a warm environment of a function with a reserved concurrency of 1
    function = isolated("tests.local.lambdas.remember", concurrency=1, reserved_concurrency=1)
    try:
        first = run(function.invoke_async({}))

        async def cancel_unstarted_then_invoke() -> dict:
            async def answer(invocation: Awaitable[object]) -> object:
                return await invocation

            # WHEN an invocation begins and the task that would await it is cancelled
            # before it ever ran (the gateway's `_route`, at a shutdown that cancels it)
            task = asyncio.ensure_future(answer(function.begin({})))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(500):
                if not function.running():
                    break
                await asyncio.sleep(0.01)
            # AND the function is invoked again
            return await function.invoke_async({})

        second = run(cancel_unstarted_then_invoke())
    finally:
        function.close()

    # THEN the first invocation ran and ended, counted no more, and its worker served the
    # next: not throttled by an invocation that would count as running forever
    assert function.running() == []
    assert second["pid"] == first["pid"]
    assert second["invocations"] == 3
    assert function.cold_starts == 1


def test_an_invocation_whose_send_fails_has_ended_when_its_caller_gets_the_error() -> None:
    # GIVEN a warm environment of a function with a reserved concurrency of 1, whose
    # socket can no longer be written (its worker's end shut)
    function = isolated("tests.local.lambdas.remember", concurrency=1, reserved_concurrency=1)
    # (one loop throughout, open: a worker that a loop which has closed watched is asked
    # whether it ended, which, shut, it soon has, and would be replaced, not sent to)
    runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
    try:
        # (twice: the cold start goes through the pool, the second is sent from the loop,
        # which then watches the worker: the next invocation takes it without asking its
        # socket whether it ended)
        runner.run(function.invoke_async({}))
        runner.run(function.invoke_async({}))
        [pid] = function.worker_pids()
        [worker] = function._idle
        with socket.socket(fileno=os.dup(worker.channel.fileno())) as end:
            end.shutdown(socket.SHUT_WR)

        async def invoke_twice() -> tuple[FunctionError, list, dict]:
            # WHEN an invocation is sent to it: the send fails at once
            with pytest.raises(FunctionError) as failed:
                await function.begin({})
            # THEN by the time its caller has the error it no longer runs, and the next
            # invocation gets a new environment instead of a throttle
            running = function.running()
            return failed.value, running, await function.invoke_async({})

        error, running, after = runner.run(invoke_twice())
    finally:
        function.close()
        runner.close()
    assert error.error_type == "Runtime.ExitError"
    assert running == []
    assert after["pid"] != pid
    assert function.cold_starts == 2


def test_an_invocation_its_caller_gave_up_on_runs_on_and_its_worker_serves_again() -> None:
    function = isolated("tests.local.lambdas.remember", concurrency=1)
    try:
        first = run(function.invoke_async({}))

        # WHEN the caller stops waiting (as the gateway does at a handshake's timeout)
        async def give_up() -> None:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(function.invoke_async({"seconds": 1}), 0.1)

        run(give_up())

        # THEN the invocation ran to its end in the same environment, which serves the next
        after = function.invoke({})
    finally:
        function.close()
    assert after["pid"] == first["pid"]
    assert after["invocations"] == 3
    assert function.cold_starts == 1


def test_an_environment_serves_a_running_event_loop_and_threads_in_turn() -> None:
    # GIVEN a function invoked from a long-running event loop (the gateway's) and from
    # threads (the HTTP API's authorizer), its one environment watched by the loop
    function = isolated("tests.local.lambdas.remember", concurrency=1)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def from_the_loop() -> dict:
        return asyncio.run_coroutine_threadsafe(function.invoke_async({}), loop).result(10)

    try:
        # WHEN the loop, a thread and the loop again invoke it
        answers = [from_the_loop(), function.invoke({}), from_the_loop()]
    finally:
        function.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    # THEN the same warm environment served all three, one after another
    assert len({answer["pid"] for answer in answers}) == 1
    assert [answer["invocations"] for answer in answers] == [1, 2, 3]
    assert function.cold_starts == 1


def test_an_idle_environment_that_ends_is_replaced_by_a_cold_start_not_a_failure() -> None:
    # GIVEN a warm environment, idle, of a function a running event loop invokes
    function = isolated("tests.local.lambdas.remember", concurrency=1)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def from_the_loop() -> dict:
        return asyncio.run_coroutine_threadsafe(function.invoke_async({}), loop).result(10)

    try:
        first = from_the_loop()
        warm = from_the_loop()

        # WHEN its process ends between invocations (killed, as the OOM killer would)
        os.kill(warm["pid"], 9)
        for _ in range(500):
            if warm["pid"] not in function.worker_pids():
                break
            time.sleep(0.01)
        second = from_the_loop()
    finally:
        function.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    # THEN the next invocation runs in a new environment, as on Lambda
    assert warm["pid"] == first["pid"]
    assert second["pid"] != warm["pid"]
    assert second["invocations"] == 1
    assert function.cold_starts == 2


def _replaced_after_answering_then_ending(invoke_next) -> None:
    """GIVEN a warm environment the event loop invokes, whose process ends 0.1 s after
    its answer, the loop busy until both the answer and the zygote's word that it ended
    are on the socket (so that it reads them at once): `invoke_next(function)` begins
    that last invocation, awaits its answer and one more invocation begun after it;
    THEN the answer is the function's, and the next invocation gets a new environment,
    as on Lambda: it does not fail for the end of the one before it."""
    function = isolated("tests.local.lambdas.remember_then_exit", concurrency=1)
    try:
        first = run(function.invoke_async({}))

        async def answered_then_next() -> tuple[dict, dict]:
            return await invoke_next(function)

        last, after = run(answered_then_next())
    finally:
        function.close()

    assert last["pid"] == first["pid"]
    assert after["pid"] != first["pid"]
    assert after["invocations"] == 1
    assert function.cold_starts == 2


def test_an_environment_that_ends_right_after_answering_is_replaced_not_failed() -> None:
    async def next_once_answered(function: IsolatedFunction) -> tuple[dict, dict]:
        # WHEN the function is invoked again as soon as the answer is awaited
        last = function.begin({"exit_after": 0.1})
        time.sleep(1.0)
        answer = await last
        return answer, await function.invoke_async({})

    _replaced_after_answering_then_ending(next_once_answered)


def test_an_invocation_begun_from_on_end_does_not_go_to_an_environment_known_ended() -> None:
    async def next_from_on_end(function: IsolatedFunction) -> tuple[dict, dict]:
        # WHEN the answer's `on_end` begins the next invocation at once, as `begin`
        # allows (the zygote's word that the environment ended read, not yet heeded)
        begun: list[asyncio.Future] = []
        last = function.begin({"exit_after": 0.1}, lambda _: begun.append(function.begin({})))
        time.sleep(1.0)
        return await last, await begun[0]

    _replaced_after_answering_then_ending(next_from_on_end)


def test_an_environment_that_ends_after_its_loop_closed_is_replaced_not_failed() -> None:
    # GIVEN a warm environment last invoked from an event loop that has since closed
    function = isolated("tests.local.lambdas.remember", concurrency=1)
    try:
        run(function.invoke_async({}))
        warm = run(function.invoke_async({}))

        # WHEN its process ends (the zygote's word of it comes to a loop that is gone)
        os.kill(warm["pid"], 9)
        [worker] = function._idle
        assert worker.channel.poll(10)
        # AND the function is invoked from a new loop
        after = run(function.invoke_async({}))
    finally:
        function.close()

    # THEN that invocation runs in a new environment, as on Lambda
    assert after["pid"] != warm["pid"]
    assert after["invocations"] == 1
    assert function.cold_starts == 2


def test_on_end_is_called_once_after_the_invocation_ended_never_before_begin_returns() -> None:
    # GIVEN a warm environment of a function with a reserved concurrency of 1
    function = isolated("tests.local.lambdas.remember", concurrency=1, reserved_concurrency=1)
    seen: list[tuple[str, object, list]] = []

    def on_end(outcome: asyncio.Future) -> None:
        # What the caller's callback finds: the outcome settled, the invocation over
        result = outcome.exception() or outcome.result()
        seen.append(("on_end", result, function.running()))

    # (one loop throughout, open: see the test of a failed send above)
    runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
    try:
        first = runner.run(function.invoke_async({}))

        async def begin_with_on_end() -> asyncio.Future:
            # WHEN an invocation begins with `on_end`, and nothing awaits it
            outcome = function.begin({}, on_end)
            seen.append(("returned", None, []))
            for _ in range(500):
                if outcome.done():
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0)
            return outcome

        outcome = runner.run(begin_with_on_end())

        # AND one begins whose send fails at once (its worker's end of the socket shut)
        [worker] = function._idle
        with socket.socket(fileno=os.dup(worker.channel.fileno())) as end:
            end.shutdown(socket.SHUT_WR)

        async def begin_failing() -> None:
            function.begin({}, on_end)
            seen.append(("returned", None, []))
            await asyncio.sleep(0)

        runner.run(begin_failing())
    finally:
        function.close()
        runner.close()

    # THEN `on_end` came once each, after `begin` returned, with the answer or the error,
    # by when the invocation no longer ran
    assert [(what, running) for what, _, running in seen] == [
        ("returned", []),
        ("on_end", []),
        ("returned", []),
        ("on_end", []),
    ]
    assert seen[1][1] == outcome.result()
    assert seen[1][1]["pid"] == first["pid"]
    assert isinstance(seen[3][1], FunctionError)
    assert seen[3][1].error_type == "Runtime.ExitError"


def test_unwatching_from_a_thread_ends_when_the_loop_stops_for_good_before_doing_it() -> None:
    # GIVEN a worker's socket watched by an event loop running in a thread of its own
    ours, theirs = socket.socketpair()
    worker = _Worker(pid=0, channel=Channel(ours))
    loop = asyncio.new_event_loop()
    busy, gate, queued = threading.Event(), threading.Event(), threading.Event()
    queue_for_the_loop = loop.call_soon_threadsafe

    def queue_and_tell(*args: object) -> asyncio.Handle:
        handle = queue_for_the_loop(*args)
        queued.set()
        return handle

    def stop_when_let() -> None:
        busy.set()
        gate.wait(10)
        loop.stop()

    loop.add_reader(worker.channel.fileno(), lambda: None)
    worker.loop = loop
    loop.call_soon(stop_when_let)
    loop.call_soon_threadsafe = queue_and_tell  # type: ignore[method-assign]
    looping = threading.Thread(target=loop.run_forever, daemon=True)
    looping.start()
    try:
        assert busy.wait(10)
        # WHEN another thread asks the loop to stop watching, and waits for it
        unwatching = threading.Thread(target=_unwatch, args=(worker,), daemon=True)
        unwatching.start()
        assert queued.wait(10)
        # AND the loop, busy meanwhile, stops for the last time and closes, the request
        # still queued (`close` drops it)
        gate.set()
        looping.join(10)
        loop.close()
        unwatching.join(10)
    finally:
        gate.set()
        theirs.close()
        worker.channel.close()

    # THEN the thread stopped waiting: the closed loop watches nothing
    assert not unwatching.is_alive()
    assert worker.loop is None


def test_an_invocation_whose_answer_the_stack_cannot_read_ends_with_that_error() -> None:
    # GIVEN a warm environment, and a stack that fails on its next answer (a fault of its
    # own, not the function's: an answer nested too deep to decode)
    function = isolated("tests.local.lambdas.remember", concurrency=1)
    ended: list[asyncio.Future] = []
    try:
        run(function.invoke_async({}))

        def unreadable(aws_request_id: str, reply: tuple) -> object:
            raise RecursionError("maximum recursion depth exceeded")

        function._answer = unreadable  # type: ignore[method-assign]

        async def invoke() -> BaseException | None:
            # WHEN the function answers
            outcome = function.begin({}, ended.append)
            await asyncio.wait({outcome}, timeout=10)
            return outcome.exception() if outcome.done() else None

        error = run(invoke())
    finally:
        function.close()

    # THEN its caller gets that error, and on_end is called: nothing waits forever for
    # it (a gateway closing); the invocation no longer runs
    assert isinstance(error, RecursionError)
    assert len(ended) == 1
    assert function.running() == []


def test_on_end_is_called_with_the_cancelled_outcome_of_an_invocation_given_up() -> None:
    # GIVEN a warm environment
    function = isolated("tests.local.lambdas.remember", concurrency=1)
    ended: list[asyncio.Future] = []
    try:
        first = run(function.invoke_async({}))

        async def give_up() -> None:
            # WHEN an invocation with on_end begins, and its caller gives up on it
            outcome = function.begin({"seconds": 0.5}, ended.append)
            outcome.cancel()
            await asyncio.sleep(0)

        run(give_up())
        # THEN on_end was called with the cancelled outcome, so a caller that keeps its
        # invocations until on_end (the gateway) lets it go
        assert [outcome.cancelled() for outcome in ended] == [True]
        # AND the invocation ran on, and its worker serves again
        after = function.invoke({})
    finally:
        function.close()
    assert after["pid"] == first["pid"]
