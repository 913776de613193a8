"""Section 8: the router's CPU per warm sync message, against a bare JSON handler.

A fresh process (`python -m bench.router_cpu EVENT_FILE`, configured as the
cold start section's functions are) imports the router's entry point, warms
it, then alternates rounds of the router and of a bare handler that decodes
the same event and encodes the same answer (`bare_handler`), timing each
round's CPU (`time.process_time()`) over many invocations. The event is the
documented `$default` sample with an `echo` frame without an `id`: a sync
action answered in the router, nothing stored. Then one more round runs
under cProfile, and the functions with the most time of their own are
reported: where the time goes.

CPU time, not wall time: other work on a shared machine stretches wall time
far more. The answer's log line and its EMF metrics are written as they are on
Lambda, through the process's stdout, which is /dev/null (file descriptor 1,
so the log handler made at the first invocation writes there too): they are
part of the message's cost, a pipe to this process's parent is not. Every
timed round's last answer is checked to be the echo's `response`.

The router runs with its per-connection rate limit on, at a rate and burst
(`RATE_LIMIT_PER_S`) the rounds never reach: each message is admitted by the
limiter's in-memory decision, as a client within the limit is. With the
default 20 a second, all but the first 20 messages would be refused and the
section would time RATE_LIMITED errors, not the echo. The shared bucket's
one DynamoDB write per burst of messages (`streamer.ratelimit`) is counted in
section 6, not here: its CPU is botocore's and the emulator's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench import stats
from bench.machine import ROOT
from streamer import config

ROUNDS = 7
INVOCATIONS = 2000
QUICK_INVOCATIONS = 300
WARMUP = 300
#: Functions listed from the profile.
PROFILE_TOP = 12
TARGET_US = 150
#: The rate limit of the router under test: on, never reached (module docstring).
RATE_LIMIT_PER_S = 1_000_000


def bare_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The least a handler answering the same frame does: decode it, encode the answer."""
    body = json.loads(event["body"])
    answer = {
        "type": "response",
        "request_id": body.get("id") or f"req-{uuid.uuid4().hex}",
        "success": True,
        "data": {"echo": body.get("payload")},
    }
    return {"statusCode": 200, "body": json.dumps(answer, separators=(",", ":"))}


CONNECTION_ID = "router-cpu="


def _sample(name: str) -> dict[str, Any]:
    event = json.loads((ROOT / "tests" / "unit" / "events" / f"{name}.json").read_text())
    event["requestContext"]["connectionId"] = CONNECTION_ID
    return event


def echo_event() -> dict[str, Any]:
    event = _sample("message")
    event["body"] = json.dumps({"action": "echo", "payload": {"hello": "world"}})
    return event


class _Context:
    function_name = "bench-router"
    function_version = "$LATEST"
    memory_limit_in_mb = "512"
    aws_request_id = "bench-router-cpu"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-router"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def _round_us(handler: Any, event: dict, invocations: int) -> float:
    context = _Context()
    started = time.process_time()
    for _ in range(invocations):
        answer = handler(event, context)
    spent = time.process_time() - started
    _check_echo(answer)
    return spent / invocations * 1e6


def _check_echo(answer: dict[str, Any]) -> None:
    """Refuse to time anything but the echo's answer (a refusal or an error costs otherwise)."""
    body = json.loads(answer["body"])
    if body.get("type") != "response" or body.get("data") != {"echo": {"hello": "world"}}:
        raise RuntimeError(f"the handler did not answer the echo: {body}")


def _profile(handler: Any, event: dict, invocations: int) -> list[dict]:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    context = _Context()
    profiler.enable()
    for _ in range(invocations):
        handler(event, context)
    profiler.disable()
    table = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in table.values()) or 1.0
    rows = sorted(table.items(), key=lambda item: -item[1][2])[:PROFILE_TOP]
    return [
        {
            "function": f"{Path(file).name}:{line}({name})" if file != "~" else name,
            "share": own / total,
        }
        for (file, line, name), (_, _, own, _, _) in rows
    ]


def child(event_file: str, invocations: int) -> dict:
    """In the fresh process: warm both handlers, then alternate timed rounds."""
    event = json.loads(Path(event_file).read_text())
    from streamer.entry import connect, router

    # The connection is opened first, as on AWS: its record is what `$connect` stores.
    if connect.handler(_sample("connect"), _Context())["statusCode"] != 200:
        raise RuntimeError("the connection was not opened")

    _check_echo(router.handler(event, _Context()))
    for handler in (router.handler, bare_handler):
        _round_us(handler, event, WARMUP)
    router_us, bare_us = [], []
    for _ in range(ROUNDS):
        router_us.append(_round_us(router.handler, event, invocations))
        bare_us.append(_round_us(bare_handler, event, invocations))
    profile = _profile(router.handler, event, invocations)
    return {"router_us": router_us, "bare_us": bare_us, "profile": profile}


def run(workdir: Path, quick: bool = False) -> dict:
    # The cold start section's setup: the functions' environment, moto's server for any
    # DynamoDB call the router makes.
    from bench import cold_start
    from local import dynamodb

    directory = workdir / "router-cpu"
    directory.mkdir(parents=True, exist_ok=True)
    event_file = directory / "event.json"
    event_file.write_text(json.dumps(echo_event()))
    database = dynamodb.MotoServer("127.0.0.1")
    try:
        dynamodb.create_tables(database.endpoint_url, cold_start.REGION, cold_start.TABLES)
        env = cold_start._environment(database.endpoint_url, "http://127.0.0.1:9", "unused")
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "lambdas"), str(ROOT)])
        env[config.RATE_LIMIT_PER_S] = str(RATE_LIMIT_PER_S)
        count = QUICK_INVOCATIONS if quick else INVOCATIONS
        result = subprocess.run(
            [sys.executable, "-m", "bench.router_cpu", str(event_file), str(count)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        database.stop()
    if result.returncode != 0:
        raise RuntimeError(f"router CPU probe failed:\n{result.stderr[-2000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        "invocations": count,
        "router_us": stats.summary(measured["router_us"], "us"),
        "bare_us": stats.summary(measured["bare_us"], "us"),
        "ratio": stats.ratio(measured["router_us"], measured["bare_us"]),
        "profile": measured["profile"],
        "target_us": TARGET_US,
    }


def _main(event_file: str, invocations: int) -> None:
    """`child`, with stdout (descriptor 1) on /dev/null while it runs and its figures
    written to the stdout it was started with."""
    sys.stdout.flush()
    figures_out = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    with figures_out:
        figures_out.write(json.dumps(child(event_file, invocations)) + "\n")


if __name__ == "__main__":
    _main(sys.argv[1], int(sys.argv[2]))
