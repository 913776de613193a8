"""Lambda functions played in threads of one interpreter, and Lambda's context object.

`LambdaFunction` runs a function's invocations in a thread pool sized like its
concurrency: the way to run a handler in-process (tests that hand it a
callable). The local stack runs its functions in worker processes instead
(`local.isolation`), one per execution environment, on the same interface.

Each function runs off the event loop, so a handler that calls back into the
gateway (posting to a connection) never waits on the loop that is waiting on
it. Events and answers cross the boundary as JSON, as they do on Lambda, so
nothing is shared by reference and an answer Lambda could not serialise fails
here too.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from local import iam

#: What `LambdaFunction.begin` calls with an invocation's settled future.
OnEnd = Callable[[asyncio.Future], None]


class EncodedEvent(str):
    """An event already written as JSON, as Lambda's Invoke API takes it (its payload):
    invoked as it is, not encoded again. The gateway writes each message event from its
    connection's pre-encoded parts (`local.apigateway.MessageEvents`)."""


#: An invocation's event: an object, or its JSON text.
Event = dict | EncodedEvent


def event_json(event: Event) -> str:
    """The event's JSON text, what crosses to the function (encoded once): a plain `str`,
    which pickles as text where `EncodedEvent` would name its class (about a
    microsecond more to pickle and to unpickle an invocation)."""
    return str(event) if isinstance(event, EncodedEvent) else json.dumps(event)


log = logging.getLogger("local.functions")


class FunctionError(Exception):
    """The handler raised, or answered with something Lambda cannot serialise.

    `error_type` and `error_message` are what Lambda reports as `errorType` and
    `errorMessage`.
    """

    def __init__(self, function_name: str, error_type: str, error_message: str) -> None:
        super().__init__(f"{function_name}: {error_type}: {error_message}")
        self.error_type = error_type
        self.error_message = error_message


#: The error type of an invocation Lambda refused for want of concurrency.
THROTTLED = "TooManyRequestsException"


@dataclass(frozen=True)
class FunctionSpec:
    """How one Lambda function is configured: handler string, timeout, memory, concurrency.

    `concurrency` is how many invocations run at once (threads, or execution
    environments in worker processes); more wait for one. `reserved_concurrency`,
    when set, is the function's concurrency limit: an invocation beyond it is
    throttled (`THROTTLED`) instead of waiting, as Lambda refuses it.
    """

    name: str
    handler: str
    timeout_s: float
    memory_mb: int = 512
    concurrency: int = 32
    reserved_concurrency: int | None = None


#: The bits a version 4 UUID fixes (RFC 9562 section 5.4): its variant, then its version.
_UUID4_FIXED = (0xC000 << 48) | (0xF000 << 64)
_UUID4_BITS = (0x8000 << 48) | (4 << 76)


def new_request_id() -> str:
    """An invocation's `aws_request_id`: a random version 4 UUID's text, as
    `str(uuid.uuid4())` writes it, without making a `uuid.UUID` (most of its cost)."""
    value = (int.from_bytes(os.urandom(16), "big") & ~_UUID4_FIXED) | _UUID4_BITS
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@functools.cache
def _names(function_name: str, region: str, account_id: str) -> tuple[str, str, str]:
    """A function's ARN, log group and log stream, in this process. The stream is named
    once, as an execution environment's is, by the day it started."""
    return (
        f"arn:aws:lambda:{region}:{account_id}:function:{function_name}",
        f"/aws/lambda/{function_name}",
        time.strftime("%Y/%m/%d/[$LATEST]local"),
    )


class LambdaContext:
    """The context object the Python runtime passes to a handler."""

    def __init__(
        self,
        spec: FunctionSpec,
        region: str,
        account_id: str,
        aws_request_id: str | None = None,
        deadline: float | None = None,
    ) -> None:
        """`deadline` is on `time.monotonic()`'s clock (one clock for every process of
        the machine); by default the function's timeout from now."""
        self.aws_request_id = aws_request_id or new_request_id()
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn, self.log_group_name, self.log_stream_name = _names(
            spec.name, region, account_id
        )
        # The Python runtime gives the memory size as text, read from its environment.
        self.memory_limit_in_mb = str(spec.memory_mb)
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + spec.timeout_s if deadline is None else deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def resolve_handler(handler: str) -> Callable[[dict, object], object]:
    """Import `package.module.function` as Lambda does at cold start."""
    module_name, _, function_name = handler.rpartition(".")
    return getattr(importlib.import_module(module_name), function_name)


class LambdaFunction:
    """One function: call it with an event, get its JSON answer or a `FunctionError`."""

    def __init__(
        self,
        spec: FunctionSpec,
        region: str,
        account_id: str,
        handler: Callable[[dict, object], object] | None = None,
    ) -> None:
        self.spec = spec
        self._region = region
        self._account_id = account_id
        self._handler = handler
        self._import_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(spec.concurrency, thread_name_prefix=f"lambda-{spec.name}")
        self._running_lock = threading.Lock()
        self._running_count = 0
        #: The most invocations that ran at once, and how many were throttled.
        self.peak_concurrency = 0
        self.throttles = 0

    def _resolved(self) -> Callable[[dict, object], object]:
        """The handler, imported by the first invocation that needs it (the cold start)."""
        with self._import_lock:
            if self._handler is None:
                self._handler = resolve_handler(self.spec.handler)
            return self._handler

    def _run(self, event_json: str) -> object:
        context = LambdaContext(self.spec, self._region, self._account_id)
        started = time.monotonic()
        try:
            # Its calls on this thread are checked against its deployed role (`local.iam`).
            with iam.acting_as(self.spec.name, self._account_id):
                answer = self._resolved()(json.loads(event_json), context)
            answer_json = json.dumps(answer)
        except Exception as error:
            log.warning(
                "%s %s failed: %s\n%s",
                self.spec.name,
                context.aws_request_id,
                error,
                traceback.format_exc(),
            )
            raise FunctionError(self.spec.name, type(error).__name__, str(error)) from error
        elapsed = time.monotonic() - started
        if elapsed > self.spec.timeout_s:
            # Lambda would have stopped the function; a thread cannot be stopped,
            # so its late answer is discarded as Lambda would discard it.
            message = f"Task timed out after {self.spec.timeout_s:.2f} seconds"
            raise FunctionError(self.spec.name, "TimeoutError", message)
        log.debug("%s %s took %.0f ms", self.spec.name, context.aws_request_id, elapsed * 1000)
        return json.loads(answer_json)

    def submit(self, event: Event) -> Future:
        """Start one invocation; the future holds the answer or a `FunctionError`.

        At the function's reserved concurrency the invocation is throttled at
        once: a synchronous invoke over the limit fails with a throttling error
        (429 `TooManyRequestsException`), and an event source mapping retries it
        (https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html,
        https://docs.aws.amazon.com/lambda/latest/dg/services-dynamodb-errors.html).
        """
        if not self._admit():
            throttled: Future = Future()
            throttled.set_exception(self._throttled())
            return throttled
        try:
            future = self._pool.submit(self._counted, event_json(event))
        except BaseException:
            # Not started (a closed pool, an event that is not JSON): not running either.
            self._release()
            raise
        # A queued invocation its caller cancelled (`asyncio.wrap_future` passes the
        # cancel on) never runs `_counted`, which releases it: released here instead. A
        # running one cannot be cancelled.
        future.add_done_callback(self._release_if_cancelled)
        return future

    def _release_if_cancelled(self, future: Future) -> None:
        if future.cancelled():
            self._release()

    def _admit(self) -> bool:
        """Count one more invocation running, or False (throttled) at the reserved limit."""
        limit = self.spec.reserved_concurrency
        with self._running_lock:
            if limit is not None and self._running_count >= limit:
                self.throttles += 1
                return False
            self._running_count += 1
            self.peak_concurrency = max(self.peak_concurrency, self._running_count)
            return True

    def _release(self) -> None:
        with self._running_lock:
            self._running_count -= 1

    def _throttled(self) -> FunctionError:
        return FunctionError(self.spec.name, THROTTLED, "Rate Exceeded.")

    def _counted(self, event_json: str) -> object:
        """`_run`, no longer counted as running once it ends (before its future is done)."""
        try:
            return self._run(event_json)
        finally:
            self._release()

    def invoke(self, event: Event) -> object:
        """Invoke and wait: for callers that are threads themselves (the stream poller)."""
        return self.submit(event).result()

    def begin(self, event: Event, on_end: OnEnd | None = None) -> asyncio.Future:
        """Start one invocation now, from the event loop: a future of its answer (or its
        `FunctionError`).

        The invocation is under way when this returns, before the caller's next await:
        a caller that has more to do in this turn of the loop (the gateway reading the
        next frame) does it while the function runs. `on_end`, when given, is called
        on the loop with the future once it is settled, never before this returns: here
        as its done callback, by `local.isolation` in the turn of the loop that settles it.
        """
        future = asyncio.wrap_future(self.submit(event))
        if on_end is not None:
            future.add_done_callback(on_end)
        return future

    async def invoke_async(self, event: Event) -> object:
        """Invoke from the event loop without blocking it."""
        return await self.begin(event)

    def close(self) -> None:
        """Wait for running invocations and release the pool's threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)
