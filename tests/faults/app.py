"""The application the fault-injection stack runs (`--app tests.faults.app`).

The demo's actions plus handlers that fail on purpose. Every handler run is
appended to a journal, a JSON line when it starts and one when it returns, at the path in
`STREAMER_TEST_RUN_LOG`: the stack runs handlers in its own worker
processes, so the journal is how a test counts runs.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from streamer.handlers import App, Handler, Progress, Request
from tests.functional.apps import app as unit_app

RUN_LOG = "STREAMER_TEST_RUN_LOG"
#: While the file at this path exists, `fragile` fails every run (`test_circuit_breaker.py`).
BREAK_FILE = "STREAMER_TEST_BREAK_FILE"

app = App()


#: A run's journal lines: one when it starts, one when its handler returns.
STARTED, FINISHED = "started", "finished"


def record_run(request: Request, phase: str = STARTED) -> None:
    """Append this run's `phase` to the journal, if there is one: one `write` of one
    line, so runs never interleave."""
    line = json.dumps(
        {
            "request_id": request.request_id,
            "action": request.action,
            "attempt": request.attempt,
            "checkpoint": request.checkpoint,
            "pid": os.getpid(),
            "phase": phase,
            # The region whose processor ran it (the two-region stack's tests).
            "region": os.environ.get("AWS_REGION"),
        }
    )
    path = os.environ.get(RUN_LOG)
    if not path:
        return
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, (line + "\n").encode())
    finally:
        os.close(descriptor)


class Journaled(Handler):
    """Another app's handler, recorded in the journal each time it runs."""

    def __init__(self, inner: Handler) -> None:
        self.action = inner.action
        self.estimated_duration = inner.estimated_duration
        self.runs_inline = inner.runs_inline
        self._inner = inner

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._inner.validate(payload)

    def process(self, request: Request, progress: Progress) -> Any:
        record_run(request)
        result = self._inner.process(request, progress)
        record_run(request, FINISHED)
        return result


# The demo's actions and the unit tests' misbehaving ones (`explode`, `flaky`, ...).
for handler in unit_app:
    app.register(Journaled(handler))


@app.action("hang", estimated_duration=60)
def hang(request: Request, progress: Progress) -> Any:
    """Reports once, then runs for `seconds` (past the processor's timeout, in the tests)."""
    record_run(request)
    progress.report(10, "started")
    time.sleep(float(request.payload.get("seconds", 60)))
    return {"hung": False}


@app.action("fragile", estimated_duration=60)
def fragile(request: Request, progress: Progress) -> Any:
    """Fails every run while the break file exists (its dependency is down), succeeds after."""
    record_run(request)
    path = os.environ.get(BREAK_FILE)
    if path and os.path.exists(path):
        raise RuntimeError("the dependency of fragile is down")
    return {"fragile": "ok"}
