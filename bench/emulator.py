"""The DynamoDB emulator alone: the stack's own calls replayed straight to a fresh emulator.

A benchmark runs the stack with `STREAMER_LOCAL_CALL_LOG` (`local.calls`): every
DynamoDB call of every function is logged with its body and its start and end.
`replay` then starts a fresh emulator of the same engine, replays the calls made
before the measured window as fast as it can (so the window starts on the same
items), and the window's calls at the moments they were made, from as many
threads as were ever in flight at once, each over a kept-alive HTTP connection
with no SDK in the way. What each replayed call takes is the emulator's own
time at the stack's call rate; the rest of a figure is the stack's.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench import stats
from local import dynamodb

#: The JSON protocol's target prefix (DynamoDB API version 2012-08-10).
TARGET = "DynamoDB_20120810."
#: Neither emulator checks signatures; both want a SigV4-shaped header naming a key.
AUTHORIZATION = (
    f"AWS4-HMAC-SHA256 Credential={dynamodb.ACCESS_KEY}/20260101/{{region}}/dynamodb/"
    "aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64
)


@dataclass(frozen=True)
class Window:
    """A span of wall-clock time (`time.time()`) a benchmark measured."""

    start: float
    end: float

    def holds(self, moment: float) -> bool:
        return self.start <= moment <= self.end


def read_log(path: Path) -> list[dict]:
    """The logged calls, oldest first."""
    if not path.exists():
        return []
    calls = [json.loads(line) for line in path.read_text().splitlines() if line]
    return sorted(calls, key=lambda call: call["start"])


def peak_in_flight(calls: list[dict]) -> int:
    """The most calls in flight at once."""
    edges = sorted([(c["start"], 1) for c in calls] + [(c["end"], -1) for c in calls])
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """How long at least one of the intervals was open (their union's length)."""
    total = 0.0
    reach = float("-inf")
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


class _Sender:
    """One replaying thread's connection to the emulator."""

    def __init__(self, endpoint: str, region: str) -> None:
        parts = urlsplit(endpoint)
        self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self._authorization = AUTHORIZATION.format(region=region)

    def send(self, call: dict) -> float:
        """Send one call and read its answer; its duration in ms."""
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": TARGET + call["operation"],
            "X-Amz-Date": "20260101T000000Z",
            "Authorization": self._authorization,
        }
        started = time.perf_counter()
        self._connection.request("POST", "/", call["body"].encode(), headers)
        self._connection.getresponse().read()
        return (time.perf_counter() - started) * 1000


def _replay_paced(endpoint: str, region: str, calls: list[dict], threads: int) -> list[float]:
    """Each call at its logged offset from the first; returns each one's duration (ms)."""
    if not calls:
        return []
    durations = [0.0] * len(calls)
    work: queue.Queue = queue.Queue()
    for index in range(len(calls)):
        work.put(index)
    origin = calls[0]["start"]
    began = time.time() + 0.2

    def run() -> None:
        sender = _Sender(endpoint, region)
        while True:
            try:
                index = work.get_nowait()
            except queue.Empty:
                return
            delay = began + (calls[index]["start"] - origin) - time.time()
            if delay > 0:
                time.sleep(delay)
            durations[index] = sender.send(calls[index])

    workers = [threading.Thread(target=run) for _ in range(max(1, threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return durations


def replay(
    log_file: Path, engine: str, region: str, tables: dict[str, str], window: list[Window]
) -> dict:
    """Replay the logged calls on a fresh `engine`; the calls inside `window` timed.

    Returns the replayed calls of the window with their logged and replayed durations.
    """
    calls = read_log(log_file)
    server = dynamodb.start(engine, "127.0.0.1", region)
    replayed: list[dict] = []
    peak = 0
    try:
        dynamodb.create_tables(server.endpoint_url, region, tables)
        done = 0
        for part in sorted(window, key=lambda w: w.start):
            # What happened before this window (or between two), as fast as it goes.
            earlier = [c for c in calls[done:] if c["start"] < part.start]
            _replay_unpaced(server.endpoint_url, region, earlier)
            done += len(earlier)
            inside = [c for c in calls[done:] if part.holds(c["start"])]
            done += len(inside)
            peak = max(peak, peak_in_flight(inside))
            durations = _replay_paced(server.endpoint_url, region, inside, peak_in_flight(inside))
            replayed += [
                {**call, "alone_ms": alone, "logged_ms": (call["end"] - call["start"]) * 1000}
                for call, alone in zip(inside, durations, strict=True)
            ]
    finally:
        server.stop()
    return {"calls": replayed, "threads": peak}


def _replay_unpaced(endpoint: str, region: str, calls: list[dict]) -> None:
    """The calls before the window, one after another: only their effect matters."""
    sender = _Sender(endpoint, region)
    for call in calls:
        sender.send(call)


def summary(replayed: dict, windows_s: float, function: str) -> dict:
    """What the emulator alone takes of the window's calls, and of one `function` invocation.

    `per_invocation_*`: the time one invocation of `function` spent in its DynamoDB calls,
    logged (in the stack) and replayed (the emulator alone); `busy_share`: the part of the
    window during which the emulator alone had at least one call in flight.
    """
    calls = replayed["calls"]
    if not calls:
        return {"calls": 0}
    by_invocation: dict[str, list[dict]] = defaultdict(list)
    for call in calls:
        if call["function"] == function:
            by_invocation[call["invocation"]].append(call)
    logged = [sum(c["logged_ms"] for c in group) for group in by_invocation.values()]
    alone = [sum(c["alone_ms"] for c in group) for group in by_invocation.values()]
    intervals = [(c["start"], c["start"] + c["alone_ms"] / 1000) for c in calls]
    operations: dict[str, int] = defaultdict(int)
    for call in calls:
        operations[f"{call['function']} {call['operation']}"] += 1
    result = {
        "calls": len(calls),
        "calls_per_s": len(calls) / windows_s,
        "threads": replayed["threads"],
        "operations": dict(sorted(operations.items())),
        "call_logged_ms": _percentiles([c["logged_ms"] for c in calls]),
        "call_alone_ms": _percentiles([c["alone_ms"] for c in calls]),
        "busy_share": busy_seconds(intervals) / windows_s,
        "function": function,
        "invocations": len(by_invocation),
    }
    if by_invocation:
        result["per_invocation_logged_ms"] = _percentiles(logged)
        result["per_invocation_alone_ms"] = _percentiles(alone)
    return result


def _percentiles(values: list[float]) -> dict:
    return {"p50": stats.percentile(values, 0.5), "p99": stats.percentile(values, 0.99)}
