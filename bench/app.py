"""The benchmark's application, loaded by the local stack with `--app bench.app`.

Its async handlers write when they start and end (and, for `burst`, when each
report was made) to the file named by `BENCH_APP_LOG`, one JSON object a
line, so the benchmark can split a request's latency into pickup, run and
delivery. The stack and the benchmark run on the same machine, so their
`time.time()` clocks agree.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from streamer import App, Progress, Request

#: Environment variable naming the file the handlers append their timestamps to.
LOG_ENV = "BENCH_APP_LOG"

app = App()
_lock = threading.Lock()


def _record(entry: dict[str, Any]) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    line = json.dumps(entry, separators=(",", ":")) + "\n"
    with _lock, open(path, "a", encoding="utf-8") as file:
        file.write(line)


@app.action("echo", estimated_duration=0.01)
def echo(request: Request, progress: Progress) -> dict[str, Any]:
    return {"echo": request.payload}


@app.action("work", estimated_duration=30)
def work(request: Request, progress: Progress) -> dict[str, Any]:
    """Sleep `ms` milliseconds in `reports` equal steps, reporting after each step."""
    started = time.time()
    run_ms = int(request.payload.get("ms", 0))
    reports = int(request.payload.get("reports", 0))
    steps = max(1, reports)
    for step in range(1, steps + 1):
        time.sleep(run_ms / steps / 1000)
        if reports:
            progress.report(100 * step / steps, f"step {step} of {steps}")
    _record({"request_id": request.request_id, "start": started, "end": time.time()})
    return {"steps": steps}


@app.action("burst", estimated_duration=30)
def burst(request: Request, progress: Progress) -> dict[str, Any]:
    """Report `reports` times, evenly over `ms` milliseconds, from 0.1 % up to 100 %."""
    started = time.time()
    run_ms = int(request.payload.get("ms", 2000))
    reports = int(request.payload.get("reports", 1000))
    made: list[tuple[float, float]] = []
    for index in range(1, reports + 1):
        # Sleep to the report's due time rather than a fixed step, so the run
        # lasts `ms` whatever each report costs.
        delay = started + run_ms / 1000 * index / reports - time.time()
        if delay > 0:
            time.sleep(delay)
        percentage = 100 * index / reports
        made.append((time.time(), percentage))
        progress.report(percentage, f"{index} of {reports}")
    _record(
        {"request_id": request.request_id, "start": started, "end": time.time(), "reports": made}
    )
    return {"reports": reports}
