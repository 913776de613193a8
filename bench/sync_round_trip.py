"""Section 1: a sync `echo` through the whole local stack against a bare echo server.

Both servers run at once in their own processes, and their runs alternate,
so both see the same noise; every stack figure is divided by the baseline
run beside it. The echo carries no `id`, so the router stores nothing: this
is the path's own cost (authorized connection, gateway, `$default` event,
router, route response).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from bench import processes, stats, wire
from streamer import config

FRAME = '{"action": "echo", "payload": {"hello": "world"}}'
#: The router's per-connection rate limit caps one connection's messages per second;
#: a throughput run with it would measure the cap, not the path.
UNLIMITED = {config.RATE_LIMIT_PER_S: "0"}


async def _run(sockets: list, duration_s: float) -> dict:
    until = time.monotonic() + duration_s
    started = time.perf_counter()
    per_client = await asyncio.gather(*(wire.round_trips(s, FRAME, until) for s in sockets))
    elapsed = time.perf_counter() - started
    latencies = [value for values in per_client for value in values]
    return {
        "throughput": len(latencies) / elapsed,
        "p50": stats.percentile(latencies, 0.5),
        "p99": stats.percentile(latencies, 0.99),
    }


async def _compare(baseline_url: str, stack_url: str, clients: int, runs: int, duration_s: float):
    targets = {"baseline": baseline_url, "stack": stack_url}
    sockets = {name: await wire.open_connections([url] * clients) for name, url in targets.items()}
    try:
        probe = sockets["stack"][0]
        await probe.send(FRAME)
        answer = json.loads(await probe.recv())
        if answer.get("type") != "response" or "data" not in answer:
            raise RuntimeError(f"the stack did not answer echo with a response: {answer}")
        # Warm up: the first messages import the app and fill the pools.
        for name in targets:
            await _run(sockets[name], 0.5)
        samples: dict[str, list[dict]] = {name: [] for name in targets}
        for run in range(runs):
            order = ["baseline", "stack"] if run % 2 == 0 else ["stack", "baseline"]
            for name in order:
                samples[name].append(await _run(sockets[name], duration_s))
    finally:
        for group in sockets.values():
            await wire.close_all(group)
    return samples


def _figures(samples: dict[str, list[dict]]) -> dict:
    result: dict = {}
    for name in ("baseline", "stack"):
        runs = samples[name]
        result[name] = {
            "throughput": stats.summary([r["throughput"] for r in runs], "msg/s"),
            "p50": stats.summary([r["p50"] for r in runs], "ms"),
            "p99": stats.summary([r["p99"] for r in runs], "ms"),
        }
    result["throughput_ratio"] = stats.ratio(
        [r["throughput"] for r in samples["stack"]], [r["throughput"] for r in samples["baseline"]]
    )
    return result


def run(workdir: Path, quick: bool = False) -> dict:
    runs = 3 if quick else 5
    with (
        processes.echo_server(workdir / "echo-server") as baseline,
        processes.local_stack(workdir / "stack-sync", env=UNLIMITED) as stack,
    ):
        url = stack.url(stack.token("sync-user"))
        one = asyncio.run(_compare(baseline.websocket_url, url, 1, runs, 1.0 if quick else 2.0))
        hundred = asyncio.run(
            _compare(baseline.websocket_url, url, 100, runs, 1.5 if quick else 2.5)
        )
    return {
        "frame": FRAME,
        "clients_1": _figures(one),
        "clients_100": _figures(hundred),
    }
