"""A test application: handlers that misbehave on purpose."""

from __future__ import annotations

import threading
import time
from typing import Any

from streamer.demo import app as demo_app
from streamer.errors import RetryableError
from streamer.handlers import App, Handler, Progress, Request, Waiting

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


#: An external batch system, in memory: job id -> items done so far, of how many.
external_jobs: dict[str, dict[str, int]] = {}
#: Set to make the external system fail its status calls (an outage).
external_outage = threading.Event()
polls: list[str] = []


class ExternalCount(Handler):
    """Hands `count` items to the external system, then polls it; 2 items per poll."""

    action = "external_count"
    estimated_duration = 600

    def process(self, request: Request, progress: Progress) -> Any:
        external_jobs[request.request_id] = {"done": 0, "total": int(request.payload["count"])}
        return Waiting(
            poll_after_s=0,
            state={"job": request.request_id},
            deadline_s=float(request.payload.get("deadline_s", 3600)),
        )

    def poll(self, request: Request, state: dict[str, Any], progress: Progress) -> Any:
        with runs_lock:
            polls.append(state["job"])
        if external_outage.is_set():
            raise RetryableError("the batch system answered 503")
        job = external_jobs[state["job"]]
        job["done"] = min(job["total"], job["done"] + 2)
        failed = job["done"] // 5
        aggregates = {"processed": job["done"], "succeeded": job["done"] - failed, "failed": failed}
        progress.report(100 * job["done"] / job["total"], "classifying", aggregates)
        if job["done"] < job["total"]:
            return Waiting(poll_after_s=0, state=state)
        return aggregates


app.register(ExternalCount())


@app.action("sync_wait", estimated_duration=0.1)
def sync_wait(request: Request, progress: Progress) -> Any:
    return Waiting(poll_after_s=1)


@app.action("off_main_thread", estimated_duration=1, inline=False)
def off_main_thread(request: Request, progress: Progress) -> Any:
    """Sync, opted out of running inline: where it ran, after `seconds` of work."""
    started = time.monotonic()
    time.sleep(float(request.payload.get("seconds", 0)))
    return {
        "main_thread": threading.current_thread() is threading.main_thread(),
        "ran_s": time.monotonic() - started,
    }
