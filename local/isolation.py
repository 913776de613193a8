"""Lambda functions whose invocations run in worker processes, one per execution environment.

This is how the local stack runs every function (`python -m local`; threads
only with `--invocations threads`). Lambda runs one invocation at a time in
an execution environment and serves concurrent invocations from more
environments, each a process of its own that keeps its module state between
the invocations it serves
(https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html,
https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html).
So here: an invocation takes an idle worker process, or starts one (a cold
start: `local.zygote` forks it with the shared libraries loaded, and it
imports the handler, Lambda's init phase, before it runs the invocation),
and gives it back when done; at most the function's
concurrency of them exist, and invocations past that wait for one (or, at a
reserved concurrency, are throttled, as `LambdaFunction` does). The stack's
process keeps the gateway and the triggers; the functions run on every core.

A worker that dies mid-invocation (killed, crashed, exited) fails that
invocation with the error Lambda reports, `Runtime.ExitError`; one past its
timeout is killed and fails with Lambda's timeout message. Either way it
writes and sends nothing more, and the next invocation gets a new worker.
With `--faults`, `kill` ends the worker running a given invocation, and
`instructions` decides per invocation which of its AWS calls fail
(`local.faults`, applied by a botocore hook in the worker, so the runtime it
runs is the unchanged one).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from local import zygote
from local.channel import Channel
from local.functions import (
    Event,
    FunctionError,
    FunctionSpec,
    LambdaFunction,
    OnEnd,
    event_json,
    new_request_id,
)
from local.worker import INIT_ERROR, READY
from local.zygote import EXITED

log = logging.getLogger("local.functions")

#: What one invocation's worker is told to fail, as `local.faults.CallFaults` reads it.
Instructions = dict
NO_INSTRUCTIONS: Instructions = {}
#: Lambda's limit for a new environment's initialisation, which its timeout does not count.
INIT_TIMEOUT_S = 10.0
#: How often a thread waiting for a loop to stop watching a worker checks that it still runs.
_UNWATCH_CHECK_S = 0.05
#: How many environments of one function start at once (see `_checkout`).
STARTS_AT_ONCE = 2


def exit_message(aws_request_id: str, returncode: int | None) -> str:
    """How Lambda words a runtime that ended mid-invocation (`Runtime.ExitError`).

    A process ended by a signal: `signal: killed` (as Go, which Lambda's init is
    written in, names it); one that exited: `exit status N`.
    """
    if returncode is None:
        cause = "Runtime exited without providing a reason"
        return f"RequestId: {aws_request_id} Error: {cause}"
    if returncode < 0:
        cause = f"signal: {signal.strsignal(-returncode).lower()}"
    else:
        cause = f"exit status {returncode}"
    return f"RequestId: {aws_request_id} Error: Runtime exited with error: {cause}"


@dataclass(eq=False)
class _Worker:
    """One execution environment: its process (the zygote's child) and our end of its socket.

    An event loop that invokes it watches its socket from then on (`loop`), idle or busy,
    so that an invocation from the loop costs no selector change: the watch callback
    ends the invocation in `pending` with the reply, or, when none is pending, learns
    that the idle environment ended.

    `deadline_check` is the timer on that loop that stops an invocation at its timeout
    (`IsolatedFunction._check_deadline`): one an environment, not one an invocation.
    """

    pid: int
    channel: Channel
    loop: asyncio.AbstractEventLoop | None = None
    pending: _OnLoop | None = None
    deadline_check: asyncio.TimerHandle | None = None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def discard(self) -> None:
        self.kill()
        self.channel.close()


@dataclass
class Invocation:
    """One invocation on its way through a worker: what `kill` chooses from."""

    aws_request_id: str
    event: dict
    worker: _Worker
    #: Why its worker was stopped: "killed" (on command) or "timed out"; None while it runs.
    stopped: str | None = field(default=None)


#: What an invocation's reply becomes when the function's timeout passes first.
_TIMED_OUT = ("timed out", None)


class _Outcome(asyncio.Future):
    """The future of an invocation sent from the loop. Cancelling it (its caller gave up)
    tells the function at once (`on_cancel`): a done callback for that would be scheduled
    for every outcome, whether cancelled or not, and cost the loop a turn an invocation."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_cancel: Callable[[], None]) -> None:
        super().__init__(loop=loop)
        self._on_cancel = on_cancel

    def cancel(self, msg: object = None) -> bool:
        if not super().cancel(msg):
            return False
        self._on_cancel()
        return True


class _OnLoop:
    """An invocation sent to its worker from the event loop.

    `outcome` is what its caller gets: a future of the handler's answer or its
    `FunctionError`. What ends the invocation settles it, in the same call, and then
    calls `on_end`: the worker's reply (`IsolatedFunction._readable`), its worker's
    deadline check past its `deadline`, or a send that failed. So the worker goes back, or is
    discarded, before anything that awaits the outcome runs, and whether or not
    anything does (a task cancelled before it ran). A caller that gave up cancels the
    outcome: the invocation is then abandoned (`IsolatedFunction._abandoned`), and a
    thread waits for the answer, as the loop may end meanwhile. An invocation whose loop
    closes before it is answered keeps its worker until the stack ends.
    """

    __slots__ = ("deadline", "ended", "invocation", "on_end", "outcome", "started")

    def __init__(self, invocation: Invocation, started: float, deadline: float) -> None:
        self.invocation = invocation
        self.started = started
        #: When the function's timeout stops it (`time.monotonic()`, the loop's clock).
        self.deadline = deadline
        self.outcome: _Outcome | None = None
        self.on_end: OnEnd | None = None
        #: Whether it ended (it ends once: by its reply, its timeout, or its caller leaving).
        self.ended = False


def _unwatch(worker: _Worker) -> None:
    """Stop the loop watching the worker's socket, if one does, from any thread.

    On the loop's own thread, or while it runs nowhere, directly; from another thread
    while it runs, on the loop, waiting for it (or until it stops). A closed loop
    watches nothing.
    """
    loop = worker.loop
    if loop is None:
        return
    if loop.is_closed():
        worker.loop = None
        return
    try:
        on_its_thread = asyncio.get_running_loop() is loop
    except RuntimeError:
        on_its_thread = False
    if on_its_thread or not loop.is_running():
        loop.remove_reader(worker.channel.fileno())
        worker.loop = None
        return
    done = threading.Event()

    def unwatch() -> None:
        _unwatch(worker)
        done.set()

    try:
        loop.call_soon_threadsafe(unwatch)
    except RuntimeError:
        # Closed since: it watches nothing any more.
        worker.loop = None
        return
    # A callback queued as the loop stops for the last time never runs (`close` drops
    # it): stop waiting when the loop no longer runs.
    while not done.wait(_UNWATCH_CHECK_S):
        if loop.is_closed():
            worker.loop = None
            return
        if not loop.is_running():
            # Racing the loop's own end (closing, or a last run that unwatches it): the
            # watch goes either way, and the worker is not watched any more.
            with contextlib.suppress(KeyError, RuntimeError, AttributeError, ValueError):
                loop.remove_reader(worker.channel.fileno())
            worker.loop = None
            return


class IsolatedFunction(LambdaFunction):
    """`LambdaFunction` with each execution environment a worker process.

    `instructions`, when given, is asked for each invocation's fault
    instructions, and the workers install the hook that applies them.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        region: str,
        account_id: str,
        instructions: Callable[[dict], Instructions] | None = None,
    ) -> None:
        super().__init__(spec, region, account_id)
        self._instructions = instructions
        self._lock = threading.Lock()
        #: Signalled when a worker is given back or a start ends.
        self._changed = threading.Condition(self._lock)
        self._starting = 0
        #: Workers alive (idle, busy, or finishing an invocation nobody waits for).
        self._workers = 0
        self._idle: list[_Worker] = []
        self._running: dict[str, Invocation] = {}
        self._stopped: list[Invocation] = []
        self._closing = False
        #: How many execution environments were started (cold starts).
        self.cold_starts = 0

    def running(self) -> list[Invocation]:
        with self._lock:
            return list(self._running.values())

    def stopped(self) -> list[Invocation]:
        """Invocations whose worker was killed or stopped at the timeout, oldest first."""
        with self._lock:
            return list(self._stopped)

    def worker_pids(self) -> list[int]:
        """The processes of the function's execution environments, idle or busy."""
        with self._lock:
            workers = self._idle + [i.worker for i in self._running.values()]
        return [worker.pid for worker in workers]

    def kill(self, invocation: Invocation) -> bool:
        """End the worker running `invocation` at once; False if it already ended."""
        log.warning("%s %s: killing its worker", self.spec.name, invocation.aws_request_id)
        return self._stop(invocation, "killed")

    def _stop(self, invocation: Invocation, reason: str) -> bool:
        with self._lock:
            if self._running.get(invocation.aws_request_id) is not invocation:
                return False
            invocation.stopped = reason
            self._stopped.append(invocation)
        invocation.worker.kill()
        return True

    def _setup(self) -> dict:
        return {
            "spec": asdict(self.spec),
            "region": self._region,
            "account_id": self._account_id,
            "sys_path": sys.path,
            "log_level": logging.getLogger().getEffectiveLevel(),
            "faults": self._instructions is not None,
        }

    def _start_worker(self) -> _Worker:
        """A new execution environment, once it has imported the handler (the init phase)."""
        ours, theirs = socket.socketpair()
        started = time.monotonic()
        try:
            pid = zygote.shared().fork(self._setup(), theirs.fileno())
        finally:
            theirs.close()
        worker = _Worker(pid, Channel(ours))
        try:
            ready = worker.channel.poll(INIT_TIMEOUT_S)
            answer = worker.channel.recv() if ready else None
        except (EOFError, OSError):
            answer = None
        if answer is not None and answer[0] == READY:
            with self._lock:
                self.cold_starts += 1
            log.info(
                "%s: new execution environment, pid %d, init %.0f ms (%.0f ms to ready)",
                self.spec.name,
                pid,
                answer[1],
                (time.monotonic() - started) * 1000,
            )
            return worker
        worker.discard()
        if answer is not None and answer[0] == INIT_ERROR:
            _, error_type, error_message, trace = answer
            log.warning("%s: init failed: %s\n%s", self.spec.name, error_message, trace)
            raise FunctionError(self.spec.name, error_type, error_message)
        raise FunctionError(
            self.spec.name, "Runtime.InitError", f"init did not finish in {INIT_TIMEOUT_S:.0f} s"
        )

    def _checkout(self) -> _Worker:
        """An idle worker, or a new one; one start at a time per function.

        Starting a worker takes CPU (its first invocation builds the runtime) that the
        busy ones need too: on a small machine, twenty environments starting at once
        finish later than a few at a time while the warm ones keep serving. So an
        invocation that finds none idle while `STARTS_AT_ONCE` starts are under way
        waits for whichever comes first.
        """
        with self._changed:
            while not self._idle and (
                self._starting >= STARTS_AT_ONCE or self._workers >= self.spec.concurrency
            ):
                self._changed.wait()
            if self._idle:
                worker = self._idle.pop()
                idle = True
            else:
                idle = False
                self._starting += 1
                self._workers += 1
        if idle:
            # A thread talks to it now, blocking: no loop may read its socket meanwhile.
            _unwatch(worker)
            if self._ended(worker):
                return self._checkout()
            return worker
        started = False
        try:
            worker = self._start_worker()
            started = True
            return worker
        finally:
            with self._changed:
                self._starting -= 1
                if not started:
                    self._workers -= 1
                self._changed.notify_all()

    def _discard(self, worker: _Worker) -> None:
        """Stop a worker for good; another may start in its place."""
        _unwatch(worker)
        worker.discard()
        with self._changed:
            self._workers -= 1
            self._changed.notify_all()

    def _give_back(self, worker: _Worker) -> None:
        """Back to the idle ones after an invocation, unless its environment ended.

        A worker sends one reply an invocation, so anything read after the reply is the
        zygote's word that its process ended, read with the reply: then it goes now,
        before anything the invocation's end calls could begin another in it.
        """
        if worker.channel.buffered():
            self._discard(worker)
            return
        with self._changed:
            if not self._closing:
                self._idle.append(worker)
                self._changed.notify()
                return
        self._discard(worker)

    def _run(self, event_json: str) -> object:
        event = json.loads(event_json) if self._instructions is not None else {}
        instructions = self._instructions(event) if self._instructions is not None else {}
        invocation = Invocation(new_request_id(), event, self._checkout())
        worker = invocation.worker
        with self._lock:
            self._running[invocation.aws_request_id] = invocation
        try:
            reply = self._exchange(invocation, event_json, instructions)
        except BaseException:
            self._discard(worker)
            raise
        finally:
            with self._lock:
                self._running.pop(invocation.aws_request_id, None)
        self._give_back(worker)
        return self._answer(invocation.aws_request_id, reply)

    def _answer(self, aws_request_id: str, reply: tuple) -> object:
        """The handler's answer from its worker's reply, or its error as `FunctionError`."""
        if reply[0] == "error":
            _, error_type, error_message, trace = reply
            log.warning(
                "%s %s failed: %s\n%s", self.spec.name, aws_request_id, error_message, trace
            )
            raise FunctionError(self.spec.name, error_type, error_message)
        return json.loads(reply[1])

    def begin(self, event: Event, on_end: OnEnd | None = None) -> asyncio.Future:
        """From the event loop: straight to an idle worker when there is one, else
        through a thread of the pool, which waits for a worker or starts one.

        Straight means the event is on the worker's socket when this returns, and the
        reply comes to the loop's watch on that socket: no thread hand-off either way.
        The invocation ends when its worker answers (or its timeout passes), whether or
        not anything awaits it (`_OnLoop`), and then `on_end` is called at once.
        Invocations with fault instructions always go through the pool.
        """
        if self._instructions is not None:
            return super().begin(event, on_end)
        # Before a worker is taken: an event that is not JSON costs none its environment.
        encoded = event_json(event)
        worker = self._idle_worker()
        if worker is None:
            return super().begin(event, on_end)
        if not self._admit():
            self._give_back(worker)
            throttled = asyncio.get_running_loop().create_future()
            throttled.set_exception(self._throttled())
            if on_end is not None:
                throttled.add_done_callback(on_end)
            return throttled
        invocation = Invocation(new_request_id(), {}, worker)
        with self._lock:
            self._running[invocation.aws_request_id] = invocation
        try:
            return self._send_on_loop(invocation, encoded, on_end)
        except BaseException:
            # Nothing was sent (the worker's socket is sound, or the send's OSError would
            # have ended the invocation): the worker is in an unknown state, so it goes.
            self._end_on_loop(invocation)
            self._discard(worker)
            raise

    def _end_on_loop(self, invocation: Invocation) -> None:
        """The invocation no longer runs: out of `running()`, not counted any more."""
        worker = invocation.worker
        worker.pending = None
        with self._lock:
            self._running.pop(invocation.aws_request_id, None)
        self._release()

    def _idle_worker(self) -> _Worker | None:
        while True:
            with self._changed:
                worker = self._idle.pop() if self._idle else None
            if worker is None:
                return None
            if worker.loop is not None and not worker.loop.is_closed():
                # A worker a loop watches is alive: its watch drops it when it ends.
                return worker
            if not self._ended(worker):
                return worker

    def _ended(self, worker: _Worker) -> bool:
        """Whether an idle worker's process ended (the zygote said so on its socket); if
        so it is discarded, and the invocation gets another environment, as on Lambda."""
        try:
            ended = worker.channel.poll(0)
        except OSError:
            ended = True
        if ended:
            self._discard(worker)
        return ended

    def _watch(self, worker: _Worker, loop: asyncio.AbstractEventLoop) -> None:
        """Have `loop` watch the worker's socket from now on (see `_Worker`)."""
        if worker.loop is loop:
            return
        _unwatch(worker)
        loop.add_reader(worker.channel.fileno(), self._readable, worker)
        worker.loop = loop
        # A check armed on another loop, or before, is not this loop's to rely on.
        worker.deadline_check = None

    def _readable(self, worker: _Worker) -> None:
        """The worker's socket has something: the reply the pending invocation awaits, or,
        when none is pending, the zygote's word that the idle environment ended.

        One read takes what the socket holds: the start of a reply waits for its rest;
        the zygote's word may come with the reply (`_give_back` then lets the worker go).
        """
        channel = worker.channel
        if not channel.buffered():
            try:
                more = channel.read()
            except OSError:
                more = False
            if more and not channel.buffered():
                return  # the start of a reply: its rest comes with the next readiness
        pending = worker.pending
        if pending is None:
            self._idle_ended(worker)
            return
        try:
            message = channel.recv() if channel.buffered() else (EXITED, None)
        except Exception:
            # Read, but not a message (cannot be unpickled): the environment is unsound.
            message = (EXITED, None)
        self._reply(pending, message)

    def _idle_ended(self, worker: _Worker) -> None:
        """An idle worker's socket said something: its environment ended; it goes."""
        _unwatch(worker)
        with self._changed:
            idle = worker in self._idle
            if idle:
                self._idle.remove(worker)
        if idle:
            self._discard(worker)

    def _send_on_loop(
        self, invocation: Invocation, event_json: str, on_end: OnEnd | None
    ) -> asyncio.Future:
        """Send the invocation to its worker from the event loop, which watches for the
        reply; `_reply` ends the invocation when it comes."""
        loop = asyncio.get_running_loop()
        worker = invocation.worker
        self._watch(worker, loop)
        started = time.monotonic()
        deadline = started + self.spec.timeout_s
        pending = worker.pending = _OnLoop(invocation, started, deadline)
        if worker.deadline_check is None:
            worker.deadline_check = loop.call_at(deadline, self._check_deadline, worker, loop)
        outcome = pending.outcome = _Outcome(loop, functools.partial(self._abandoned, pending))
        try:
            worker.channel.send((invocation.aws_request_id, deadline, event_json, {}))
        except OSError:
            self._reply(pending, (EXITED, None))
            # Ended already: `on_end` is called as a done callback, after this returns.
            if on_end is not None:
                outcome.add_done_callback(on_end)
            return outcome
        pending.on_end = on_end
        return outcome

    def _check_deadline(self, worker: _Worker, loop: asyncio.AbstractEventLoop) -> None:
        """Lambda stops a function at its timeout; so does this, for the invocation the
        worker runs, if its deadline passed; else it checks again at that deadline.

        One timer an environment, armed when an invocation is sent and none is: every
        invocation of a function has the same timeout, so a check armed for an earlier
        one comes before the deadline of any later one, and moves on to it. A timer an
        invocation would cost each one the timer's making and cancelling, in the loop's
        heap of timers, for a timeout that almost never passes.
        """
        if worker.loop is not loop:
            return  # watched by another loop since, or by none: not this check's to end
        worker.deadline_check = None
        pending = worker.pending
        if pending is None:
            return
        if loop.time() >= pending.deadline:
            self._reply(pending, _TIMED_OUT)
            return
        worker.deadline_check = loop.call_at(pending.deadline, self._check_deadline, worker, loop)

    def _reply(self, pending: _OnLoop, message: tuple) -> None:
        """The worker answered, died, or outlived the timeout: the invocation ends (the
        worker goes back to the pool or is discarded), its outcome is settled, and its
        `on_end` called."""
        if pending.ended:
            return
        pending.ended = True
        invocation, outcome = pending.invocation, pending.outcome
        assert outcome is not None
        try:
            self._conclude(invocation, message, pending.started)
            answer = self._outcome(invocation, message)
        except Exception as error:
            # The function's error, or a fault of the stack's own (an answer too deep to
            # decode): either way its caller gets it, never an outcome left pending.
            outcome.set_exception(error)
        else:
            outcome.set_result(answer)
        if pending.on_end is not None:
            pending.on_end(outcome)

    def _abandoned(self, pending: _OnLoop) -> None:
        """Its caller gave up (a handshake past its timeout) before the invocation ended:
        the function runs on, as on Lambda. A thread waits for the answer nobody reads,
        so that it is read even if this loop ends, and the worker serves again once it
        answers."""
        if pending.ended:
            return
        pending.ended = True
        worker = pending.invocation.worker
        worker.pending = None
        _unwatch(worker)
        threading.Thread(
            target=self._finish_abandoned,
            args=(pending.invocation, pending.started),
            daemon=True,
        ).start()
        if pending.on_end is not None and pending.outcome is not None:
            # Called with the cancelled outcome too, as a done callback (not from within
            # `cancel`): a caller that keeps its invocations until they end lets it go.
            pending.outcome.add_done_callback(pending.on_end)

    def _finish_abandoned(self, invocation: Invocation, started: float) -> None:
        """Wait for the answer nobody reads, until the function's timeout; then conclude."""
        channel = invocation.worker.channel
        deadline = started + self.spec.timeout_s
        try:
            answered = channel.poll(max(0.0, deadline - time.monotonic()))
            message = channel.recv() if answered else _TIMED_OUT
        except (EOFError, OSError):
            message = (EXITED, None)
        self._conclude(invocation, message, started)

    def _conclude(self, invocation: Invocation, message: tuple, started: float) -> None:
        """End an invocation sent from the loop by its worker's reply: the worker goes back
        to the pool, or, stopped at the timeout or ended, is discarded."""
        worker = invocation.worker
        if message is _TIMED_OUT:
            # Recorded as stopped while it still counts as running (`stopped()`).
            self._stop(invocation, "timed out")
        self._end_on_loop(invocation)
        if message is _TIMED_OUT:
            self._discard(worker)
            log.warning(
                "%s %s: %s", self.spec.name, invocation.aws_request_id, self._timeout_message()
            )
        elif message[0] == EXITED:
            self._discard(worker)
            elapsed_ms = (time.monotonic() - started) * 1000
            exited = exit_message(invocation.aws_request_id, message[1])
            log.warning("%s after %.0f ms: %s", self.spec.name, elapsed_ms, exited)
        else:
            self._give_back(worker)

    def _timeout_message(self) -> str:
        return f"Task timed out after {self.spec.timeout_s:.2f} seconds"

    def _outcome(self, invocation: Invocation, message: tuple) -> object:
        """What awaiting an invocation sent from the loop gives: the handler's answer, or
        Lambda's error for a timeout or a worker that ended."""
        if message is _TIMED_OUT:
            raise FunctionError(self.spec.name, "TimeoutError", self._timeout_message())
        if message[0] == EXITED:
            exited = exit_message(invocation.aws_request_id, message[1])
            raise FunctionError(self.spec.name, "Runtime.ExitError", exited)
        return self._answer(invocation.aws_request_id, message)

    def _exchange(self, invocation: Invocation, event_json: str, instructions: dict) -> tuple:
        """Send one invocation and wait for its reply, within the function's timeout."""
        channel = invocation.worker.channel
        started = time.monotonic()
        deadline = started + self.spec.timeout_s
        try:
            channel.send((invocation.aws_request_id, deadline, event_json, instructions))
            if not channel.poll(self.spec.timeout_s):
                # Lambda stops a function at its timeout; so does this.
                self._stop(invocation, "timed out")
                message = f"Task timed out after {self.spec.timeout_s:.2f} seconds"
                log.warning("%s %s: %s", self.spec.name, invocation.aws_request_id, message)
                raise FunctionError(self.spec.name, "TimeoutError", message)
            reply = channel.recv()
        except (EOFError, OSError):
            reply = (EXITED, None)
        if reply[0] != EXITED:
            return reply
        elapsed = time.monotonic() - started
        message = exit_message(invocation.aws_request_id, reply[1])
        log.warning("%s after %.0f ms: %s", self.spec.name, elapsed * 1000, message)
        raise FunctionError(self.spec.name, "Runtime.ExitError", message)

    def close(self) -> None:
        """Let running invocations finish (the pool waits), then stop the idle workers."""
        with self._lock:
            self._closing = True
        super().close()
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            _unwatch(worker)
            with contextlib.suppress(OSError):
                worker.channel.send(None)
                # It answers by ending: the zygote reports its exit.
                if worker.channel.poll(5):
                    worker.channel.recv()
            self._discard(worker)
