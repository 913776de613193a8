"""Running a sync handler under a deadline, on the invocation's own thread where it can be.

The router answers a sync message within its deadline whatever the handler
does. Lambda's Python runtime calls the handler on the process's main thread,
one invocation at a time (the runtime interface client's loop, `run` in
aws/aws-lambda-python-runtime-interface-client awslambdaric/bootstrap.py:
`wait_next_invocation` then `handle_event_request`, on the thread that started
it; Lambda Managed Instances fork a process per concurrent invocation), so
there the handler runs inline under an interval timer (`signal.setitimer`):
at the deadline the timer's signal raises `DeadlinePassed` inside the
handler, which stops it. Python runs signal handlers on the main thread only,
between bytecodes, and wakes blocking calls such as `time.sleep` and socket
reads to do so (PEP 475); code blocked inside a C extension that never
returns to Python is stopped when it does.

Elsewhere (a thread of the local stack's threaded mode, a test's thread) the
handler runs on a worker thread of `pool` and the caller stops waiting at the
deadline; the handler itself runs on. Inline, the message costs no thread
hand-off, which was the largest share of a warm sync message's CPU
(docs/benchmarks.md, section 8).

`DeadlinePassed` derives from `BaseException`, so a handler's `except
Exception` does not swallow it. What an inline deadline cannot stop in time, a
sync handler should not do (docs/protocol.md, "Sync handlers and their
deadline"): catch `BaseException` or use a bare `except:` (the timer fires
once), wait on a thread pool in a `with` block (its exit waits for the tasks),
or block in a C extension that retries after a signal. An exception raised
from a signal can land between any two bytecodes, so a handler should keep no
half-built shared state between invocations. The router owns SIGALRM and the
real-time interval timer.
"""

from __future__ import annotations

import _signal
import concurrent.futures
import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

Result = TypeVar("Result")


class DeadlinePassed(BaseException):
    """Raised inside a handler run inline when its deadline passes."""


class DeadlineExceeded(Exception):
    """The call did not end within its deadline."""


def run_within(
    call: Callable[[], Result],
    timeout_s: float,
    pool: concurrent.futures.Executor,
    *,
    inline: bool = True,
) -> Result:
    """`call()`'s result, or `DeadlineExceeded` if it has not returned after `timeout_s`.

    `inline=False` runs it on `pool` even on the main thread: for a handler that
    cannot be stopped by a signal (see above), at the price of a thread hand-off
    and of a handler that runs on past its deadline.
    """
    if timeout_s <= 0:
        raise DeadlineExceeded
    if inline and threading.current_thread() is threading.main_thread():
        return _inline(call, timeout_s)
    future = pool.submit(call)
    try:
        return future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        raise DeadlineExceeded from None


#: Whether a call runs inline under the timer now (the signal handler raises only then).
_armed = False


def _expire(signum: int, frame: Any) -> None:
    # A signal delivered after the call returned (before the timer is cleared) is late:
    # the call made its deadline.
    if _armed:
        raise DeadlinePassed


def _inline(call: Callable[[], Result], timeout_s: float) -> Result:
    global _armed
    if _signal.getsignal(signal.SIGALRM) is not _expire:
        # Installed at the first call and left in place (`signal.signal` costs more than
        # the rest of the deadline, about 16 us a call here); put back if something
        # replaced it, since SIGALRM's default action would end the process. Read with
        # `_signal.getsignal`, which `signal.getsignal` wraps: the wrapper's conversion
        # to an enum (tried and refused for a function) cost about 9 us a call.
        signal.signal(signal.SIGALRM, _expire)
    try:
        _armed = True
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        result = call()
        _armed = False
        return result
    except DeadlinePassed:
        raise DeadlineExceeded from None
    finally:
        _armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
