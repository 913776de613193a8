"""Section 4: cold start of each entry point, and the size of what ships to Lambda.

Each entry point runs in a fresh process (`bench.probe`): import, then one
invocation with a representative event (the documented samples in
tests/unit/events, or a record the requests table's stream really held),
against the baseline of a fresh process that imports boto3 and creates one
client. DynamoDB is moto's server and `@connections` a local HTTP server
answering 200, so first invocations make their real calls without waiting on
a network. Runs of all entry points alternate, so noise spreads evenly.

The ratio to the baseline is of CPU time (the probe's `time.process_time()`):
other work on a shared machine stretches wall time far more than CPU time.
Wall times are reported beside it.

Package sizes come from building the archives with `components.package`:
the dependency layer and the tracing layer as they are built now, and, for
comparison, the single layer they were split from as it was built before the
runtime-provided packages were left out (both layers built with those packages
kept, added up: they hold no distribution twice).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import boto3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench import stats
from bench.machine import ROOT
from components import package
from local import dynamodb, streams, tokens
from local.management import HttpResponse, HttpServer
from local.schedule import scheduled_event
from streamer import catalog, config
from streamer.catalog import Trigger

EVENTS = ROOT / "tests" / "unit" / "events"
REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLES = {
    "connections": "bench-connections",
    "requests": "bench-requests",
    "subscriptions": "bench-subscriptions",
}
ISSUER, AUDIENCE = "bench", "streamer"
BASELINE = "baseline"
#: Every function's entry point, read from the catalog (`streamer.catalog`, the one
#: list of functions), in its order.
ENTRY_POINTS = {function.name: function.handler for function in catalog.FUNCTIONS.values()}
#: The router again with its per-connection rate limit off: the router's own work,
#: without the DynamoDB round trips the limit makes on every message.
ROUTER_UNLIMITED = "router, rate limit off"
RUNS = 9
WARM_INVOCATIONS = {"authorizer": 100, "router": 50, ROUTER_UNLIMITED: 200}


class _AcceptingConnections:
    """`@connections` that takes every post: the probes only need an answer."""

    def post(self, connection_id: str, data: bytes) -> bool:
        return True

    def describe(self, connection_id: str) -> dict | None:
        return None

    def delete(self, connection_id: str) -> bool:
        return True


def _event(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text())


def _environment(dynamodb_url: str, management_url: str, public_key: str) -> dict[str, str]:
    """What the functions get on AWS, pointed at the local endpoints."""
    return {
        **os.environ,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": dynamodb.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": dynamodb.SECRET_KEY,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url,
        "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": dynamodb_url,
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        config.CONNECTIONS_TABLE: TABLES["connections"],
        config.REQUESTS_TABLE: TABLES["requests"],
        config.SUBSCRIPTIONS_TABLE: TABLES["subscriptions"],
        # An override for the sample events' API only (`streamer.endpoints`).
        config.MANAGEMENT_ENDPOINT: f"{_event('connect')['requestContext']['apiId']}"
        f"={management_url}",
        config.JWT_PUBLIC_KEY: public_key,
        config.JWT_ISSUER: ISSUER,
        config.JWT_AUDIENCE: AUDIENCE,
        config.APP_MODULE: config.DEFAULT_APP,
    }


def _queue_requests(env: dict[str, str], count: int, directory: Path) -> None:
    """Queue `count` demo reports through the router, in a process of their own."""
    events = []
    for index in range(count):
        event = _event("message")
        event["requestContext"]["connectionId"] = f"queue-{index}"
        event["body"] = json.dumps(
            {
                "action": "generate_report",
                "id": f"cold-{index}",
                "payload": {"pages": 1, "page_ms": 0},
            }
        )
        events.append(event)
    events_file = directory / "queue-events.json"
    events_file.write_text(json.dumps(events))
    script = (
        "import json, sys\n"
        "from streamer.entry import router\n"
        "class Context:\n"
        "    def get_remaining_time_in_millis(self): return 29000\n"
        "for event in json.load(open(sys.argv[1])):\n"
        "    answer = json.loads(router.handler(event, Context())['body'])\n"
        "    assert answer['type'] == 'acknowledgment', answer\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(events_file)], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"queueing requests failed:\n{result.stderr[-2000:]}")


def _stream_events(dynamodb_url: str, stream_arn: str) -> list[dict]:
    """One Lambda stream event per PENDING request the requests table's stream holds."""
    client = dynamodb.client("dynamodbstreams", dynamodb_url, REGION)
    found = []
    for shard in client.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = client.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for record in client.get_records(ShardIterator=iterator, Limit=1000)["Records"]:
            if record["eventName"] == "INSERT":
                found.append({"Records": [streams.lambda_record(record, stream_arn)]})
    return found


def _events_for_run(run: int, token: str, processor_event: dict) -> dict[str, dict]:
    """The event each function gets in run `run`, as what invokes it (its first trigger)
    sends it: one connection's life, one request, one HTTP call, one notification, and
    each schedule's rule."""
    connection_id = f"cold-start-{run}="
    authorize = _event("authorizer_connect")
    authorize["queryStringParameters"] = {"token": token}
    authorize["multiValueQueryStringParameters"] = {"token": [token]}
    connect, message, disconnect = _event("connect"), _event("message"), _event("disconnect")
    for event in (authorize, connect, message, disconnect):
        event["requestContext"]["connectionId"] = connection_id
    of_trigger = {
        Trigger.WEBSOCKET_AUTHORIZER: authorize,
        Trigger.WEBSOCKET_CONNECT: connect,
        Trigger.WEBSOCKET_DEFAULT: message,
        Trigger.WEBSOCKET_DISCONNECT: disconnect,
        Trigger.REQUESTS_STREAM: processor_event,
        # A sync action of the sample's caller, as its authorizer context names it.
        Trigger.HTTP_API: _event("http_post_requests"),
        Trigger.NOTIFICATIONS: _event("sns_notification"),
    }
    events = {}
    for function in catalog.FUNCTIONS.values():
        trigger = function.triggers[0]
        if trigger is Trigger.SCHEDULE:
            arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/streamer-{function.name}-schedule"
            events[function.name] = scheduled_event(arn, REGION, ACCOUNT, time.time())
        else:
            events[function.name] = of_trigger[trigger]
    return events


def _probe(target: str, event: dict | None, env: dict[str, str], directory: Path) -> dict:
    command = [sys.executable, "-m", "bench.probe", BASELINE]
    if target == ROUTER_UNLIMITED:
        env = {**env, config.RATE_LIMIT_PER_S: "0"}
    if target != BASELINE:
        event_file = directory / "event.json"
        event_file.write_text(json.dumps(event))
        warm = str(WARM_INVOCATIONS.get(target, 0))
        handler = ENTRY_POINTS["router" if target == ROUTER_UNLIMITED else target]
        command = [sys.executable, "-m", "bench.probe", handler, str(event_file), warm]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    wall_ms = (time.perf_counter() - started) * 1000
    if result.returncode != 0:
        raise RuntimeError(f"probe of {target} failed:\n{result.stderr[-2000:]}")
    timings = json.loads(result.stdout.strip().splitlines()[-1])
    timings["process_ms"] = wall_ms
    return timings


def _measure(directory: Path, runs: int) -> dict:
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = tokens.public_key_pem(private_pem)
    token = tokens.mint(private_pem, "cold-user", "cold-tenant", issuer=ISSUER, audience=AUDIENCE)
    database = dynamodb.MotoServer("127.0.0.1")
    management = HttpServer("127.0.0.1", 0, lambda method, path: HttpResponse(404))
    management.start(_AcceptingConnections())
    try:
        stream_arns = dynamodb.create_tables(database.endpoint_url, REGION, TABLES)
        env = _environment(database.endpoint_url, f"http://127.0.0.1:{management.port}", public_pem)
        _queue_requests(env, runs, directory)
        processor_events = _stream_events(database.endpoint_url, stream_arns[TABLES["requests"]])
        targets = (BASELINE, *ENTRY_POINTS, ROUTER_UNLIMITED)
        samples: dict[str, list[dict]] = {name: [] for name in targets}
        for run in range(runs):
            events = _events_for_run(run, token, processor_events[run])
            events[ROUTER_UNLIMITED] = events["router"]
            for target in samples:
                samples[target].append(_probe(target, events.get(target), env, directory))
    finally:
        management.close()
        database.stop()
    result = {}
    for target, runs_of_target in samples.items():
        figures = {
            name: stats.summary([s[name] for s in runs_of_target], "ms")
            for name in ("import_ms", "first_ms", "total_ms", "total_cpu_ms", "process_ms")
        }
        if target != BASELINE:
            for total, ratio in (("total_cpu_ms", "ratio"), ("total_ms", "ratio_wall")):
                figures[ratio] = stats.ratio(
                    [s[total] for s in runs_of_target], [s[total] for s in samples[BASELINE]]
                )
        if "warm_ms" in runs_of_target[0]:
            figures["warm_ms"] = stats.summary([s["warm_ms"] for s in runs_of_target], "ms")
        result[target] = figures
    return result


def _sizes(archive: Path) -> dict:
    """Zipped and unzipped size, and the unzipped size of each top-level package in it."""
    packages: dict[str, int] = {}
    with zipfile.ZipFile(archive) as z:
        infos = z.infolist()
    for info in infos:
        parts = info.filename.split("/")
        top = parts[1] if parts[0] == "python" and len(parts) > 1 else parts[0]
        packages[top] = packages.get(top, 0) + info.file_size
    return {
        "zipped_bytes": archive.stat().st_size,
        "unzipped_bytes": sum(packages.values()),
        "files": len(infos),
        "packages": dict(sorted(packages.items(), key=lambda item: -item[1])),
    }


def _added(first: dict, second: dict) -> dict:
    """The sizes of two archives' entries as if they were one archive."""
    packages = dict(first["packages"])
    for name, size in second["packages"].items():
        packages[name] = packages.get(name, 0) + size
    return {
        **{key: first[key] + second[key] for key in ("zipped_bytes", "unzipped_bytes", "files")},
        "packages": dict(sorted(packages.items(), key=lambda item: -item[1])),
    }


def package_sizes(directory: Path) -> dict:
    """The code archive and both layers as built now, and the one layer of before, with what
    the runtime provides."""
    result: dict = {"code": _sizes(package.build_code(directory / "now").path)}
    try:
        layer, tracing_layer = package.build_layers(directory / "now")
        result["layer"] = _sizes(layer.path)
        result["tracing_layer"] = _sizes(tracing_layer.path)
        full = package.build_layers(directory / "full", exclude=())
        result["layer_with_runtime_packages"] = _added(*(_sizes(a.path) for a in full))
    except subprocess.CalledProcessError as error:
        result["layer_error"] = f"pip failed ({error.returncode}): is the package index reachable?"
    return result


def run(workdir: Path, quick: bool = False) -> dict:
    directory = workdir / "cold-start"
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "boto3_version": boto3.__version__,
        "entry_points": _measure(directory, 3 if quick else RUNS),
        "package": package_sizes(directory / "package"),
    }
