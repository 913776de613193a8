"""Section 3: a handler reporting 1,000 times in 2 s, and what the client receives.

The runtime's rule (docs/protocol.md, "Progress coalescing"): the first
report, the first report at or above 90 % and the report of 100 % go out at
once; otherwise at most one `progress` per 200 ms, the latest pending one
within an interval, and whatever is pending before `complete`.

Staleness is measured per report: the time from the handler making it to the
client receiving a `progress` that carries it or a later report. The largest
of these is how old the client's view of the latest report ever got.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench import processes, stats, wire
from bench.app import LOG_ENV
from bench.async_path import handler_times

REPORTS = 1000
RUN_MS = 2000


def staleness_ms(reports: list[list[float]], received: list[tuple[float, float]]) -> list[float]:
    """For each (made at, percentage) report, how long until the client saw it or a later one."""
    ages = []
    for made_at, percentage in reports:
        seen = next((at for at, shown in received if shown >= percentage), None)
        if seen is not None:
            ages.append((seen - made_at) * 1000)
    return ages


async def _one(stack: processes.Server, run: int) -> wire.AsyncCall:
    socket = await wire.open_connection(stack.url(stack.token(f"progress-{run}")))
    try:
        return await wire.call_async(
            socket, "burst", f"burst-{run}", {"ms": RUN_MS, "reports": REPORTS}
        )
    finally:
        await socket.close()


def run(workdir: Path, quick: bool = False) -> dict:
    runs = 3 if quick else 5
    log_file = workdir / "progress-app.jsonl"
    log_file.unlink(missing_ok=True)
    with processes.local_stack(workdir / "stack-progress", env={LOG_ENV: str(log_file)}) as stack:
        calls = [asyncio.run(_one(stack, run)) for run in range(runs)]
    handlers = handler_times(log_file)
    messages, stalest, final, missing = [], [], [], []
    for call in calls:
        handler = handlers.get(call.request_id)
        if call.status != "COMPLETED" or handler is None:
            continue
        ages = staleness_ms(handler["reports"], call.progress)
        messages.append(len(call.progress))
        stalest.append(max(ages))
        final.append(call.progress[-1][1] if call.progress else 0.0)
        missing.append(len(handler["reports"]) - len(ages))
    return {
        "reports": REPORTS,
        "run_ms": RUN_MS,
        "completed": len(messages),
        "runs": runs,
        "messages": stats.summary(messages, "messages"),
        "max_staleness": stats.summary(stalest, "ms"),
        "final_percentage": stats.summary(final, "%"),
        "reports_never_shown": sum(missing),
    }
