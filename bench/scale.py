"""Section 5: 2,000 WebSocket clients on one local gateway, idle and then all busy.

The stack runs on DynamoDB Local when it is installed: moto answers a query
on an index by scanning the whole table (`Table.query` in
moto/dynamodb/models/table.py), and the router queries an index for every
async request (the user's active requests), so on moto each request costs
more than the one before and 2,000 of them take minutes.

Idle: the clients connect in equal steps (each user its own token, as users
would); after each step the stack's resident memory (VmRSS) is read, so each
step gives a per-connection figure, and 1 GiB divided by their median is the
number of idle connections one gateway holds in 1 GiB. With DynamoDB Local
the connections' items live in its process, not the stack's.

The bare echo server is measured the same way, as the baseline of what a
WebSocket connection costs in Python.

Busy: then every client sends one async request at once (`work`: a 10 ms
sleep, no progress) and the run ends when every `complete` is in, or after a
timeout.

The stack's functions run in worker processes (`python -m local`'s default);
the same burst on a stack whose functions run in threads of its one process
(`--invocations threads`) is the baseline. The burst's DynamoDB calls are
logged and replayed straight to a fresh emulator at the same moments
(`bench.emulator`), for the emulator's own share.
"""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path

from bench import emulator, processes, stats, wire
from bench.emulator import Window

CLIENTS = 2000
STEPS = 4
WORK = {"ms": 10, "reports": 0}
TIMEOUT_S = 240
#: Sockets the benchmark and the stack need beyond one per client.
SPARE_FILES = 256


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to the hard one; return it.

    The stack inherits the limit from the benchmark that starts it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


async def _settled_rss(pid: int) -> int:
    """RSS once it stops moving (the stack finishes `$connect`s after the handshakes)."""
    previous = processes.rss_bytes(pid)
    for _ in range(20):
        await asyncio.sleep(0.5)
        current = processes.rss_bytes(pid)
        if abs(current - previous) < 256 * 1024:
            return current
        previous = current
    return previous


async def _warm_up(server: processes.Server, urls: list[str]) -> None:
    """Open and close a few connections first: the stack's first handshakes load what every
    later one uses (DynamoDB's backends, the functions' clients), which is no
    connection's own memory."""
    sockets = await wire.open_connections(urls)
    await wire.close_all(sockets)
    await _settled_rss(server.pid)


async def _idle(server: processes.Server, urls: list[str]) -> tuple[dict, list]:
    """Connect `urls` in `STEPS` steps, reading the server's RSS after each."""
    rss_before = await _settled_rss(server.pid)
    sockets: list = []
    steps = []
    step_size = len(urls) // STEPS
    started = time.perf_counter()
    for step in range(STEPS):
        end = (step + 1) * step_size if step < STEPS - 1 else len(urls)
        sockets += await wire.open_connections(urls[step * step_size : end], concurrency=100)
        steps.append({"connections": len(sockets), "rss_bytes": await _settled_rss(server.pid)})
    connect_s = time.perf_counter() - started
    previous = {"connections": 0, "rss_bytes": rss_before}
    per_connection = []
    for step in steps:
        grown = step["rss_bytes"] - previous["rss_bytes"]
        per_connection.append(grown / (step["connections"] - previous["connections"]))
        previous = step
    idle = stats.summary(per_connection, "bytes")
    return {
        "connect_s": connect_s,
        "rss_before_bytes": rss_before,
        "steps": steps,
        "bytes_per_connection": idle,
        "connections_per_gib": 2**30 / idle["median"],
    }, sockets


async def _baseline(server: processes.Server, clients: int) -> dict:
    urls = [server.websocket_url] * clients
    await _warm_up(server, urls[:50])
    idle, sockets = await _idle(server, urls)
    await wire.close_all(sockets)
    return idle


async def _burst(stack: processes.Server, sockets: list, rss_before: int) -> tuple[dict, Window]:
    """Every socket sends one async request at once; the figures, and the burst's window."""
    started = time.time()
    calls = await asyncio.gather(
        *(
            wire.call_async(socket, "work", f"scale-{i}", WORK, timeout_s=TIMEOUT_S)
            for i, socket in enumerate(sockets)
        )
    )
    completed = [c for c in calls if c.status == "COMPLETED"]
    ended = max((c.completed_at for c in completed), default=time.time())
    rss_busy = processes.rss_bytes(stack.pid)
    acks = [(c.acknowledged_at - c.sent_at) * 1000 for c in calls if c.acknowledged_at]
    totals = [(c.completed_at - c.sent_at) * 1000 for c in completed]
    return {
        "requests": len(calls),
        "completed": len(completed),
        "wall_s": ended - started,
        "requests_per_s": len(completed) / (ended - started),
        "ack_p50_ms": stats.percentile(acks, 0.5) if acks else None,
        "ack_p99_ms": stats.percentile(acks, 0.99) if acks else None,
        "complete_p50_ms": stats.percentile(totals, 0.5) if totals else None,
        "complete_p99_ms": stats.percentile(totals, 0.99) if totals else None,
        "rss_bytes": rss_busy,
        "bytes_per_connection": (rss_busy - rss_before) / len(calls),
        "environments": processes.environments_memory(stack.pid),
    }, Window(started, ended)


async def _stack(stack: processes.Server, clients: int) -> tuple[dict, Window]:
    await _warm_up(stack, [stack.url(stack.token(f"scale-warm-{i}")) for i in range(50)])
    urls = [stack.url(stack.token(f"scale-{i}")) for i in range(clients)]
    idle, sockets = await _idle(stack, urls)
    busy, window = await _burst(stack, sockets, idle["rss_before_bytes"])
    await wire.close_all(sockets)
    return {"idle": idle, "busy": busy}, window


async def _threads_baseline(stack: processes.Server, clients: int) -> dict:
    """The burst alone, on the stack whose functions run in threads."""
    await _warm_up(stack, [stack.url(stack.token(f"scale-warm-{i}")) for i in range(50)])
    urls = [stack.url(stack.token(f"scale-threads-{i}")) for i in range(clients)]
    sockets = await wire.open_connections(urls, concurrency=100)
    busy, _ = await _burst(stack, sockets, processes.rss_bytes(stack.pid))
    await wire.close_all(sockets)
    return busy


def run(workdir: Path, quick: bool = False) -> dict:
    limit = raise_open_files_limit()
    clients = min(500 if quick else CLIENTS, max(0, limit - SPARE_FILES))
    with processes.echo_server(workdir / "echo-scale") as baseline:
        bare = asyncio.run(_baseline(baseline, clients))
    engine = processes.best_dynamodb()
    flags = ("--shutdown-grace", "60", "--dynamodb", engine)
    call_log = workdir / "scale-calls.jsonl"
    call_log.unlink(missing_ok=True)
    with processes.local_stack(workdir / "stack-scale", *flags, call_log=call_log) as stack:
        result, window = asyncio.run(_stack(stack, clients))
        tables, region = stack.ready["tables"], stack.ready["region"]
    threads_flags = (*flags, "--invocations", "threads")
    with processes.local_stack(workdir / "stack-scale-threads", *threads_flags) as stack:
        result["threads_busy"] = asyncio.run(_threads_baseline(stack, clients))
    replayed = emulator.replay(call_log, engine, region, tables, [window])
    result["emulator"] = emulator.summary(replayed, window.end - window.start, "streamer-router")
    result["clients"] = clients
    result["dynamodb"] = engine
    result["open_files_limit"] = limit
    result["baseline_idle"] = bare
    result["idle_memory_ratio"] = (
        result["idle"]["bytes_per_connection"]["median"] / bare["bytes_per_connection"]["median"]
    )
    return result
