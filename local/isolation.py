"""A Lambda function whose invocations run in worker processes, so a worker can really die.

The threads of `LambdaFunction` cannot be stopped; a process can. With
`--faults` the stack runs the stream processor this way: each invocation goes
to a warm worker process (started on demand, reused like a warm Lambda
environment), and `kill` ends a worker with SIGKILL in the middle of whatever
it runs. As on Lambda, a killed or timed-out invocation writes nothing more,
sends nothing more, and fails with the error Lambda reports, so the event
source mapping retries its batch and the request's lease expires.

`instructions` decides, per invocation, which of the worker's AWS calls fail
(`local.faults`); the worker applies them with a botocore hook of its own, so
the runtime it runs is the unchanged one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from local.functions import FunctionError, FunctionSpec, LambdaContext, LambdaFunction

log = logging.getLogger("local.functions")

#: What one invocation's worker is told to fail, as `local.faults.CallFaults` reads it.
Instructions = dict
NO_INSTRUCTIONS: Instructions = {}
#: Lambda's limit for a new environment's initialisation, which its timeout does not count.
INIT_TIMEOUT_S = 10.0
READY = "ready"


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    connection: Connection

    def kill(self) -> None:
        self.process.kill()

    def discard(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.connection.close()


@dataclass
class Invocation:
    """One invocation on its way through a worker: what `kill` chooses from."""

    aws_request_id: str
    event: dict
    worker: _Worker
    #: Why its worker was stopped: "killed" (on command) or "timed out"; None while it runs.
    stopped: str | None = field(default=None)


class IsolatedFunction(LambdaFunction):
    """`LambdaFunction` with each invocation in a worker process; `kill` ends one mid-run."""

    def __init__(
        self,
        spec: FunctionSpec,
        region: str,
        account_id: str,
        instructions: Callable[[dict], Instructions] = lambda event: NO_INSTRUCTIONS,
    ) -> None:
        super().__init__(spec, region, account_id)
        self._instructions = instructions
        # spawn: the stack's process runs threads, which fork would copy half-way.
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._running: dict[str, Invocation] = {}
        self._stopped: list[Invocation] = []
        self._closing = False

    def running(self) -> list[Invocation]:
        with self._lock:
            return list(self._running.values())

    def stopped(self) -> list[Invocation]:
        """Invocations whose worker was killed or stopped at the timeout, oldest first."""
        with self._lock:
            return list(self._stopped)

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

    def _start_worker(self) -> _Worker:
        """A new worker, once it has imported the handler (Lambda's init phase)."""
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=serve,
            args=(theirs, self.spec, self._region, self._account_id),
            name=f"lambda-{self.spec.name}",
            daemon=True,
        )
        process.start()
        theirs.close()
        worker = _Worker(process, ours)
        try:
            if ours.poll(INIT_TIMEOUT_S) and ours.recv() == READY:
                return worker
        except (EOFError, OSError):
            pass
        worker.discard()
        raise FunctionError(
            self.spec.name, "Runtime.InitError", f"init did not finish in {INIT_TIMEOUT_S:.0f} s"
        )

    def _checkout(self) -> _Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._start_worker()

    def _run(self, event_json: str) -> object:
        event = json.loads(event_json)
        invocation = Invocation(str(uuid.uuid4()), event, self._checkout())
        worker = invocation.worker
        with self._lock:
            self._running[invocation.aws_request_id] = invocation
        try:
            reply = self._exchange(invocation, (event_json, self._instructions(event)))
        except BaseException:
            worker.discard()
            raise
        finally:
            with self._lock:
                self._running.pop(invocation.aws_request_id, None)
        with self._lock:
            if self._closing:
                worker.discard()
            else:
                self._idle.append(worker)
        if reply[0] == "error":
            _, error_type, error_message, trace = reply
            log.warning(
                "%s %s failed: %s\n%s",
                self.spec.name,
                invocation.aws_request_id,
                error_message,
                trace,
            )
            raise FunctionError(self.spec.name, error_type, error_message)
        return json.loads(reply[1])

    def _exchange(self, invocation: Invocation, message: tuple) -> tuple:
        """Send one invocation and wait for its reply, within the function's timeout."""
        connection = invocation.worker.connection
        started = time.monotonic()
        try:
            connection.send(message)
            if not connection.poll(self.spec.timeout_s):
                # Lambda stops a function at its timeout; so does this.
                self._stop(invocation, "timed out")
                message = f"Task timed out after {self.spec.timeout_s:.2f} seconds"
                log.warning("%s %s: %s", self.spec.name, invocation.aws_request_id, message)
                raise FunctionError(self.spec.name, "TimeoutError", message)
            return connection.recv()
        except (EOFError, OSError) as error:
            elapsed = time.monotonic() - started
            cause = "signal: killed" if invocation.stopped else type(error).__name__
            message = (
                f"RequestId: {invocation.aws_request_id} Error: Runtime exited with error: {cause}"
            )
            log.warning("%s after %.0f ms: %s", self.spec.name, elapsed * 1000, message)
            raise FunctionError(self.spec.name, "Runtime.ExitError", message) from error

    def close(self) -> None:
        """Let running invocations finish (the pool waits), then stop the idle workers."""
        with self._lock:
            self._closing = True
        super().close()
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            with contextlib.suppress(OSError):
                worker.connection.send(None)
            worker.process.join(timeout=5)
            worker.discard()


def serve(connection: Connection, spec: FunctionSpec, region: str, account_id: str) -> None:
    """A worker process: run invocations from `connection` until told to stop or orphaned."""
    from local.faults import CallFaults
    from local.functions import resolve_handler

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    faults = CallFaults.install()
    handler = resolve_handler(spec.handler)
    connection.send(READY)
    while True:
        try:
            message = connection.recv()
        except EOFError:
            return  # the stack is gone
        if message is None:
            return
        event_json, instructions = message
        faults.arm(instructions)
        context = LambdaContext(spec, region, account_id)
        try:
            answer_json = json.dumps(handler(json.loads(event_json), context))
            reply: tuple = ("ok", answer_json)
        except Exception as error:
            reply = ("error", type(error).__name__, str(error), traceback.format_exc())
        connection.send(reply)
