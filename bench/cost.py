"""Section 6: what one request costs, counted, and priced at AWS list prices.

The stack runs under `bench.counting`, on DynamoDB Local when it is
installed (AWS's own engine reports the capacity units, indexes included;
moto reports a fixed 1 per call, so on moto only calls are counted). Each
scenario is measured as the difference between the counts before and after
it, once the stack is quiet, divided by its number of requests. The
sweeper's and the poller's schedules are set to an hour, so nothing runs but
the scenario.

API Gateway bills every message in either direction: the client's frame, the
route response, and each post through `@connections`. They are counted on
the client's side. `bench.alternatives` sets each request's cost next to
Streamer's floor and to what a user would build instead on AWS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

from bench import alternatives, prices, processes, wire
from bench.counting import READS, WRITES
from components.settings import DEFAULT_SIZES
from local import dynamodb

#: Requests per sync scenario, paced under the router's per-connection rate limit.
SYNC_REQUESTS = 30
SYNC_PACE_S = 0.07
#: Concurrent requests per async scenario, each on a connection of its own.
ASYNC_REQUESTS = 5
ASYNC_SCENARIOS = (
    # (name, handler run in ms, progress reports)
    ("async, no progress", 0, 0),
    ("async, 10 reports in 1 s", 1000, 10),
    ("async, 50 reports in 5 s", 5000, 50),
)
STREAMS = "dynamodbstreams"


class Counts:
    """Reads the counts file `bench.counting` keeps, once the stack has gone quiet."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def _read(self) -> dict:
        data = json.loads(self._path.read_text()) if self._path.exists() else {}
        # The stream poller reads all the time; it is not part of any request.
        calls = {k: v for k, v in data.get("calls", {}).items() if not k.startswith(STREAMS)}
        return {"calls": calls, "invocations": data.get("invocations", {})}

    async def quiet(self, settle_s: float = 0.6, timeout_s: float = 15) -> dict:
        deadline = time.monotonic() + timeout_s
        last = self._read()
        while time.monotonic() < deadline:
            await asyncio.sleep(settle_s)
            current = self._read()
            if current == last:
                return current
            last = current
        return last


def _difference(before: dict, after: dict, requests: int) -> dict:
    """Per-request counts between two snapshots."""

    def per(group: str, fields: tuple[str, ...]) -> dict:
        result = {}
        for key, value in after[group].items():
            old = before[group].get(key, {})
            delta = {f: (value[f] - old.get(f, 0)) / requests for f in fields}
            if any(delta.values()):
                result[key] = delta
        return result

    calls = per("calls", ("calls", "units", "failed_conditions"))
    return {"calls": calls, "invocations": per("invocations", ("invocations", "seconds"))}


def _deployed_memory_mb(function_name: str) -> int:
    return DEFAULT_SIZES[function_name.removeprefix("streamer-")].memory_mb


def _totals(counted: dict, messages: float, units_measured: bool) -> dict:
    """Sum per-request counts into billable quantities and a price per million requests.

    Lambda duration is what the functions took here, at their deployed memory
    sizes; the processor's includes the handler's own run (shared by the
    records of a batch, which run at once).
    """
    calls = counted["calls"]

    def total(field: str, operations: set[str]) -> float:
        return sum(
            v[field]
            for k, v in calls.items()
            if k.startswith("dynamodb ") and k.split(" ")[1] in operations
        )

    # A write refused by its condition is still billed (1 WRU for an item up to 1 KB).
    wru = total("units", WRITES) + total("failed_conditions", WRITES)
    rru = total("units", READS)
    invocations = sum(v["invocations"] for v in counted["invocations"].values())
    gb_s = sum(
        v["seconds"] * _deployed_memory_mb(name) / 1024
        for name, v in counted["invocations"].items()
    )
    usd = {
        "api_gateway_messages": messages * prices.WEBSOCKET_MESSAGE.usd,
        "lambda_requests": invocations * prices.LAMBDA_REQUEST.usd,
        "lambda_duration": gb_s * prices.LAMBDA_ARM_GB_SECOND.usd,
    }
    if units_measured:
        usd["dynamodb"] = wru * prices.DYNAMODB_WRITE.usd + rru * prices.DYNAMODB_READ.usd
    per_million = {k: v * 1e6 for k, v in usd.items()}
    per_million["total"] = sum(per_million.values())
    return {
        "dynamodb_writes": total("calls", WRITES),
        "dynamodb_reads": total("calls", READS),
        "failed_conditions": total("failed_conditions", WRITES),
        "wru": wru if units_measured else None,
        "rru": rru if units_measured else None,
        "management_posts": sum(
            v["calls"] for k, v in calls.items() if k.endswith(" PostToConnection")
        ),
        "lambda_invocations": invocations,
        "lambda_gb_s": gb_s,
        "messages": messages,
        "usd_per_million": per_million,
    }


async def _sync(sockets: list, with_id: bool, prefix: str) -> int:
    """Send paced echoes on one connection; return how many were answered `response`."""
    answered = 0
    for i in range(SYNC_REQUESTS):
        frame = {"action": "echo", "payload": {"n": i}}
        if with_id:
            frame["id"] = f"{prefix}-{i}"
        await sockets[0].send(json.dumps(frame))
        answered += json.loads(await sockets[0].recv()).get("type") == "response"
        await asyncio.sleep(SYNC_PACE_S)
    return answered


async def _warm_up(url: str) -> None:
    """One of everything first: a function's first invocation (imports, clients) is not
    what a request costs."""
    socket = await wire.open_connection(url)
    await socket.send(json.dumps({"action": "echo", "id": "warm-sync", "payload": {}}))
    await socket.recv()
    await wire.call_async(socket, "work", "warm-async", {"ms": 100, "reports": 2})
    await socket.close()


async def _scenarios(stack: processes.Server, counts: Counts) -> dict:
    url = stack.url(stack.token("cost-user"))
    await _warm_up(stack.url(stack.token("cost-warm-up")))
    results: dict = {}

    before = await counts.quiet()
    sockets = await wire.open_connections([url] * ASYNC_REQUESTS)
    after = await counts.quiet()
    results["connection (authorizer, $connect)"] = {
        "requests": ASYNC_REQUESTS,
        "counted": _difference(before, after, ASYNC_REQUESTS),
        "messages": 0,
    }

    for name, with_id in (("sync, no id", False), ("sync, with id", True)):
        before = after
        answered = await _sync(sockets, with_id, name.replace(" ", "").replace(",", "-"))
        after = await counts.quiet()
        results[name] = {
            "requests": SYNC_REQUESTS,
            "answered": answered,
            "counted": _difference(before, after, SYNC_REQUESTS),
            "messages": 2,
        }

    for name, run_ms, reports in ASYNC_SCENARIOS:
        before = after
        tag = f"cost-{run_ms}-{reports}"
        calls = await asyncio.gather(
            *(
                wire.call_async(s, "work", f"{tag}-{i}", {"ms": run_ms, "reports": reports})
                for i, s in enumerate(sockets)
            )
        )
        after = await counts.quiet()
        received = sum(1 + len(c.progress) + 1 for c in calls) / len(calls)
        results[name] = {
            "requests": len(calls),
            "answered": sum(c.status == "COMPLETED" for c in calls),
            "run_s": run_ms / 1000,
            "reports": reports,
            "progress_received": sum(len(c.progress) for c in calls) / len(calls),
            "counted": _difference(before, after, len(calls)),
            "messages": 1 + received,
        }

    before = after
    await wire.close_all(sockets)
    after = await counts.quiet()
    results["disconnection ($disconnect)"] = {
        "requests": len(sockets),
        "counted": _difference(before, after, len(sockets)),
        "messages": 0,
    }
    return results


def run(workdir: Path, quick: bool = False) -> dict:
    engine = processes.best_dynamodb()
    counts_file = workdir / "counts.json"
    counts_file.unlink(missing_ok=True)
    # The poller, like the sweeper, runs on a schedule and queries every due shard: not a
    # request's cost.
    flags = ("--dynamodb", engine, "--sweep-interval", "3600", "--poll-jobs-interval", "3600")
    with processes.local_stack(workdir / "stack-cost", *flags, counts_file=counts_file) as stack:
        scenarios = asyncio.run(_scenarios(stack, Counts(counts_file)))
    units_measured = engine == dynamodb.DYNAMODB_LOCAL
    for name, scenario in scenarios.items():
        scenario["totals"] = _totals(scenario["counted"], scenario["messages"], units_measured)
        scenario["comparison"] = alternatives.comparison(name, scenario)
    print(alternatives.console(scenarios), flush=True)
    return {
        "dynamodb": engine,
        "units_measured": units_measured,
        "scenarios": scenarios,
        "prices": [dataclasses.asdict(price) for price in prices.ALL],
        "prices_taken_on": prices.TAKEN_ON,
    }
