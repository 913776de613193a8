"""Section 2: the async path, split into acknowledgment, pickup and completion.

A request of the benchmark app's `work` action sleeps `WORK_MS` and records
when its handler started and ended (`bench.app`). From the client's and the
handler's clocks (one machine):

- acknowledgment latency: request sent -> `acknowledgment` received;
- pickup latency: `acknowledgment` received -> handler started (the record
  travels through the requests table's stream, whose poller reads an idle
  shard every `--poll-interval`);
- completion overhead: handler ended -> `complete` received (the final
  write, the subscribers' read and the post through `@connections`).

With 1 client the requests go one after another, after a random pause; with
100 clients (one user each, as users would) they are sent at once. Pickup is
also measured for requests sent back to back, the moment the previous one
completed.

The stack runs on DynamoDB Local when it is installed, its functions in worker
processes (`python -m local`'s default). The 100-client runs alternate with
those of a stack whose functions run in threads of its one process
(`--invocations threads`, the local stack before issue 15), the baseline,
running beside it. The DynamoDB calls
of the worker-process stack's 100-client runs are logged and replayed straight
to a fresh emulator at the same moments (`bench.emulator`): what the emulator
alone takes of an acknowledgment.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

from bench import emulator, processes, stats, wire
from bench.app import LOG_ENV
from bench.emulator import Window
from local.event_source_mapping import LAMBDA_POLL_INTERVAL_S

WORK_MS = 20
#: The stack's own, Lambda's base rate (`local.event_source_mapping`).
POLL_INTERVAL_S = LAMBDA_POLL_INTERVAL_S


def handler_times(log_file: Path) -> dict[str, dict]:
    """What `bench.app` recorded, by request id."""
    if not log_file.exists():
        return {}
    entries = (json.loads(line) for line in log_file.read_text().splitlines() if line)
    return {entry["request_id"]: entry for entry in entries}


def _phases(calls: list[wire.AsyncCall], handlers: dict[str, dict]) -> dict[str, list[float]]:
    phases: dict[str, list[float]] = {"ack": [], "pickup": [], "completion": [], "total": []}
    for call in calls:
        handler = handlers.get(call.request_id)
        if call.acknowledged_at is None or call.completed_at is None or handler is None:
            continue
        phases["ack"].append((call.acknowledged_at - call.sent_at) * 1000)
        phases["pickup"].append((handler["start"] - call.acknowledged_at) * 1000)
        phases["completion"].append((call.completed_at - handler["end"]) * 1000)
        phases["total"].append((call.completed_at - call.sent_at) * 1000)
    return phases


async def _sequential(
    stack: processes.Server, tag: str, requests: int, pause: bool = True
) -> list[wire.AsyncCall]:
    socket = await wire.open_connection(stack.url(stack.token("async-single")))
    calls = []
    try:
        for i in range(requests):
            if pause:
                # A random pause first: a request sent the moment the previous one
                # completed meets the poller at the start of its sleep (see `run`).
                await asyncio.sleep(random.uniform(0, 1.5 * POLL_INTERVAL_S))
            calls.append(await wire.call_async(socket, "work", f"{tag}-{i}", {"ms": WORK_MS}))
        return calls
    finally:
        await socket.close()


async def _concurrent(
    stack: processes.Server, tag: str, clients: int
) -> tuple[list[wire.AsyncCall], Window]:
    """`clients` requests at once; the calls, and when they were sent until the last ended."""
    urls = [stack.url(stack.token(f"async-{tag}-{i}")) for i in range(clients)]
    sockets = await wire.open_connections(urls)
    try:
        started = time.time()
        calls = list(
            await asyncio.gather(
                *(
                    wire.call_async(socket, "work", f"many-{tag}-{i}", {"ms": WORK_MS})
                    for i, socket in enumerate(sockets)
                )
            )
        )
        return calls, Window(started, time.time())
    finally:
        await wire.close_all(sockets)


def _summarise(runs: list[dict[str, list[float]]], sent: int, completed: int) -> dict:
    result: dict = {"requests": sent, "completed": completed}
    for phase in ("ack", "pickup", "completion", "total"):
        result[phase] = {
            "p50": stats.summary([stats.percentile(r[phase], 0.5) for r in runs], "ms"),
            "p99": stats.summary([stats.percentile(r[phase], 0.99) for r in runs], "ms"),
        }
    return result


def _many(groups: list[list[wire.AsyncCall]], handlers: dict[str, dict]) -> dict:
    sent = sum(len(calls) for calls in groups)
    completed = sum(1 for calls in groups for c in calls if c.status == "COMPLETED")
    return _summarise([_phases(calls, handlers) for calls in groups], sent, completed)


def run(workdir: Path, quick: bool = False) -> dict:
    runs = 2 if quick else 3
    log_file = workdir / "async-app.jsonl"
    log_file.unlink(missing_ok=True)
    call_log = workdir / "async-calls.jsonl"
    call_log.unlink(missing_ok=True)
    env = {LOG_ENV: str(log_file)}
    engine = processes.best_dynamodb()
    flags = ("--poll-interval", str(POLL_INTERVAL_S), "--dynamodb", engine)
    with (
        processes.local_stack(workdir / "stack-async", *flags, env=env, call_log=call_log) as stack,
        processes.local_stack(
            workdir / "stack-async-threads", *flags, "--invocations", "threads", env=env
        ) as threads,
    ):
        # Warm up: imports, pools, the first stream read.
        asyncio.run(_sequential(stack, "warm-up", 2))
        asyncio.run(_sequential(threads, "threads-warm-up", 2))
        single_runs, many_runs, back_to_back, windows, threads_runs = [], [], [], [], []
        for run in range(runs):
            single = _sequential(stack, f"single-{run}", 10 if quick else 15)
            single_runs.append(asyncio.run(single))
            # The two stacks' 100-client runs alternate, so both see the same noise.
            for kind in ("processes", "threads") if run % 2 == 0 else ("threads", "processes"):
                if kind == "threads":
                    threads_runs.append(asyncio.run(_concurrent(threads, f"threads-{run}", 100))[0])
                    continue
                calls, window = asyncio.run(_concurrent(stack, f"processes-{run}", 100))
                many_runs.append(calls)
                windows.append(window)
            back_to_back.append(asyncio.run(_sequential(stack, f"next-{run}", 10, pause=False)))
        environments = processes.environments_memory(stack.pid)
        tables = stack.ready["tables"]
        region = stack.ready["region"]
    handlers = handler_times(log_file)
    result: dict = {
        "work_ms": WORK_MS,
        "poll_interval_ms": POLL_INTERVAL_S * 1000,
        "dynamodb": engine,
        "environments": environments,
    }
    # Each request sent the moment the previous one completed: the invocation's end woke
    # the poller, which read and now sleeps a full interval before it reads again.
    result["back_to_back_pickup_p50"] = stats.summary(
        [stats.percentile(_phases(calls, handlers)["pickup"], 0.5) for calls in back_to_back],
        "ms",
    )
    result["clients_1"] = _many(single_runs, handlers)
    result["clients_100"] = _many(many_runs, handlers)
    result["threads_clients_100"] = _many(threads_runs, handlers)
    replayed = emulator.replay(call_log, engine, region, tables, windows)
    measured_s = sum(window.end - window.start for window in windows)
    result["emulator"] = emulator.summary(replayed, measured_s, "streamer-router")
    return result
