"""A test application: handlers that misbehave on purpose."""

from __future__ import annotations

import threading
import time
from typing import Any

from streamer.demo import app as demo_app
from streamer.errors import RetryableError
from streamer.handlers import App, Handler, Progress, Request

app = App()
for demo_handler in demo_app:
    app.register(demo_handler)

runs: list[str] = []
runs_lock = threading.Lock()


def record_run(request: Request) -> None:
    with runs_lock:
        runs.append(request.request_id)


@app.action("explode", estimated_duration=60)
def explode(request: Request, progress: Progress) -> Any:
    record_run(request)
    raise RuntimeError("secret internal detail arn:aws:dynamodb:us-east-1:1:table/x")


@app.action("big_result", estimated_duration=60)
def big_result(request: Request, progress: Progress) -> Any:
    return {"blob": "x" * (101 * 1024)}


@app.action("flaky", estimated_duration=60)
def flaky(request: Request, progress: Progress) -> Any:
    record_run(request)
    if request.attempt < int(request.payload.get("succeed_on", 3)):
        raise RetryableError("upstream busy")
    return {"attempt": request.attempt}


@app.action("slow_sync", estimated_duration=1)
def slow_sync(request: Request, progress: Progress) -> Any:
    time.sleep(float(request.payload.get("seconds", 2)))
    return {"slept": True}


@app.action("chatty", estimated_duration=60)
def chatty(request: Request, progress: Progress) -> Any:
    """1,000 reports spread over `seconds`."""
    seconds = float(request.payload.get("seconds", 2))
    for i in range(1, 1001):
        progress.report(i / 10, f"step {i}")
        time.sleep(seconds / 1000)
    return {"steps": 1000}


@app.action("wait_for_cancel", estimated_duration=60)
def wait_for_cancel(request: Request, progress: Progress) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        progress.report(10, "waiting")
        time.sleep(0.02)
    return {"cancelled": False}


class Counter(Handler):
    """A class-based handler, as application authors may write them."""

    action = "count"
    estimated_duration = 0.5

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        from streamer.errors import ValidationError

        if not isinstance(payload.get("to"), int):
            raise ValidationError({"to": "must be an integer"})
        return payload

    def process(self, request: Request, progress: Progress) -> Any:
        return list(range(request.payload["to"]))


app.register(Counter())
