"""`python -m local --regions us-east-1,eu-west-1`: one local stack per region over global tables.

This process starts one DynamoDB per region (moto's server or DynamoDB Local,
each a child process, as AWS has one endpoint per region), creates Streamer's
tables in each, and replicates them with `local.replicator.Replicator`
(last writer wins, after `replication_lag_s`), reading each replica's own
stream, as MREC global tables do. Then it runs each region's functions and
gateway as a single-region stack in a process of its own
(`local.region_child`): every function reads its environment once per
process, and a region's functions must see that region. Each region's event
source mapping reads its own replica's stream, where replicated writes
appear as they do on AWS: a write to one replica is replicated to all the
others ("Global tables core concepts", Amazon DynamoDB developer guide,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/globaltables-CoreConcepts.html),
each replica has its own stream, and the `ReplicationLatency` metric is
defined as the time between a change appearing in one replica's stream and
in another replica (DynamoDB's CloudWatch metrics).

Every function of every region gets the deployment's regions, each region's
table endpoint, each region's API in its management endpoint overrides, and
takeover timings short enough for tests (`region_environment`). One signing
key serves every region, so one dev token works in all of them.

A region can be stopped and started again (`set_region`, the `--faults`
control API of `local.region_control`): stopped, its process group is gone
(gateway, router, processor, sweeper, poller, schedules), while its DynamoDB
replica keeps answering and replicating; started again, it listens on the
same ports with the same API id.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local import dynamodb, region_control, tokens
from local.faults import PREFIX
from local.management import HttpResponse, HttpServer
from local.region_child import RegionLaunch, RegionProcess
from local.region_control import RUNNING, STOPPED, RegionFailed
from local.replicator import Replicator
from local.stack import StackOptions, StartupError, write_ready_file
from streamer import config

log = logging.getLogger("local.multiregion")

# The runtime's multi-region settings (issue 16), read by `streamer.config`.
REGIONS_ENV = config.REGIONS
TABLE_ENDPOINTS_ENV = config.TABLE_ENDPOINTS
HEARTBEAT_STALE_ENV = config.HEARTBEAT_STALE_S
TAKEOVER_GRACE_ENV = config.TAKEOVER_GRACE_S
SWEEP_INTERVAL_ENV = config.SWEEP_INTERVAL_S

DEFAULT_REPLICATION_LAG_S = 0.5
DEFAULT_TAKEOVER_GRACE_S = 1.0
#: A region's heartbeat is stale after this many sweep intervals without one (by default).
HEARTBEAT_STALE_SWEEPS = 3
#: The checkout root, where `python -m local.region_child` is found.
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RegionsOptions:
    """`python -m local --regions ...`: what every region's stack shares, and the replication."""

    #: Every region's stack options; region, ports, DynamoDB and API id are set per region.
    stack: StackOptions
    regions: tuple[str, ...]
    replication_lag_s: float = DEFAULT_REPLICATION_LAG_S
    #: None: `HEARTBEAT_STALE_SWEEPS` sweep intervals.
    heartbeat_stale_s: float | None = None
    takeover_grace_s: float = DEFAULT_TAKEOVER_GRACE_S
    log_level: str = "INFO"

    @property
    def heartbeat_stale(self) -> float:
        if self.heartbeat_stale_s is not None:
            return self.heartbeat_stale_s
        return HEARTBEAT_STALE_SWEEPS * self.stack.sweep_interval_s


@dataclass(frozen=True)
class RegionPlace:
    """Where one region listens, fixed for the stack's life (a restart comes back here)."""

    region: str
    api_id: str
    port: int
    http_port: int

    def management_url(self, host: str) -> str:
        return f"http://{host}:{self.http_port}"


def api_id(region: str) -> str:
    return f"local-{region}"


def _seconds(value: float) -> str:
    """`5` rather than `5.0`: the text a person would write in the variable."""
    return f"{value:g}"


def place_regions(options: RegionsOptions) -> list[RegionPlace]:
    """Each region's ports: with `--port 0` free ones, else `--port` (and `--http-port`,
    by default `--port`+1) for the first region and two more for each next one."""
    stack = options.stack
    places = []
    for index, region in enumerate(options.regions):
        if stack.port == 0:
            port, http_port = dynamodb.free_port(stack.host), dynamodb.free_port(stack.host)
        else:
            port = stack.port + 2 * index
            http_port = (stack.http_port or stack.port + 1) + 2 * index
        places.append(RegionPlace(region, api_id(region), port, http_port))
    return places


def region_environment(
    options: RegionsOptions, endpoints: Mapping[str, str], places: Sequence[RegionPlace]
) -> dict[str, str]:
    """The variables every region's functions get, on top of their own stack's.

    The watch-token secret is one for all regions, as a deployment configures it
    once: a token handed out in one region is good in another.
    """
    management = {place.api_id: place.management_url(options.stack.host) for place in places}
    return {
        REGIONS_ENV: ",".join(options.regions),
        TABLE_ENDPOINTS_ENV: json.dumps(dict(endpoints)),
        config.MANAGEMENT_ENDPOINT: ",".join(f"{a}={url}" for a, url in management.items()),
        SWEEP_INTERVAL_ENV: _seconds(options.stack.sweep_interval_s),
        HEARTBEAT_STALE_ENV: _seconds(options.heartbeat_stale),
        TAKEOVER_GRACE_ENV: _seconds(options.takeover_grace_s),
        config.WATCH_TOKEN_SECRET: os.environ.get(config.WATCH_TOKEN_SECRET)
        or secrets.token_urlsafe(32),
    }


#: What the ready file says of each region.
READY_PER_REGION = (
    "websocket_url",
    "management_url",
    "http_url",
    "api_id",
    "dynamodb_endpoint",
    "batch_provider_url",
    "faults_url",
)


def ready_file_content(
    options: RegionsOptions, started: Mapping[str, dict], control_url: str | None
) -> dict:
    """The first region's ready file (`pid`: this process), with every region's URLs."""
    ready = {
        **started[options.regions[0]],
        "pid": os.getpid(),
        "regions": {
            region: {name: content[name] for name in READY_PER_REGION if name in content}
            for region, content in started.items()
        },
        "replication_lag_s": options.replication_lag_s,
    }
    if control_url is not None:
        ready["control_url"] = control_url
    return ready


class _NoConnections:
    """The control server has no connections: `region_control.handle` answers every path."""

    def post(self, connection_id: str, data: bytes) -> bool:
        return False

    def describe(self, connection_id: str) -> dict | None:
        return None

    def delete(self, connection_id: str) -> bool:
        return False


class MultiRegionStack:
    """Regions over replicated tables. `start`, then `close` once."""

    def __init__(self, options: RegionsOptions) -> None:
        if len(set(options.regions)) < 2 or len(set(options.regions)) != len(options.regions):
            raise StartupError("--regions needs at least two different regions")
        self.options = options
        self.ready: dict = {}
        self._directory = Path(tempfile.mkdtemp(prefix="streamer-regions-"))
        self._databases: dict[str, dynamodb.MotoServer | dynamodb.DynamoDBLocal] = {}
        self._replicator: Replicator | None = None
        self._processes: dict[str, RegionProcess] = {}
        self._control: HttpServer | None = None
        # One region change at a time.
        self._changing = threading.Lock()
        self._closed = False

    def start(self) -> dict:
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> dict:
        options = self.options
        stack = options.stack
        if stack.jwt_public_key_file is None and stack.jwks_url is None:
            # Made once here, not by the regions at once: one key signs for every region.
            tokens.dev_private_key(stack.state_dir)
        places = place_regions(options)
        self._databases = self._start_databases()
        endpoints = {region: db.endpoint_url for region, db in self._databases.items()}
        settings = config.Settings.from_env()
        tables = {
            "connections": settings.connections_table,
            "requests": settings.requests_table,
            "subscriptions": settings.subscriptions_table,
        }
        for region, endpoint in endpoints.items():
            dynamodb.create_tables(endpoint, region, tables)
        # Before any region writes: the replicator reads every stream from its start.
        self._replicator = Replicator(
            endpoints, list(tables.values()), lag_s=options.replication_lag_s
        )
        self._replicator.start()

        environment = {
            **os.environ,
            **region_environment(options, endpoints, places),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        management = {p.api_id: p.management_url(stack.host) for p in places}
        for place in places:
            region_options = dataclasses.replace(
                stack,
                region=place.region,
                port=place.port,
                http_port=place.http_port,
                ready_file=self._directory / f"{place.region}.json",
                dynamodb_endpoint=endpoints[place.region],
                api_id=place.api_id,
                management_endpoints={a: url for a, url in management.items() if a != place.api_id},
            )
            launch = RegionLaunch(region_options, options.log_level, os.getpid())
            self._processes[place.region] = RegionProcess(launch, environment)
        try:
            with concurrent.futures.ThreadPoolExecutor(len(places)) as pool:
                started = dict(
                    zip(
                        self._processes,
                        pool.map(RegionProcess.start, self._processes.values()),
                        strict=True,
                    )
                )
        except RegionFailed as error:
            raise StartupError(str(error)) from None
        control_url = self._start_control() if stack.faults else None
        self.ready = ready_file_content(options, started, control_url)
        if stack.ready_file is not None:
            write_ready_file(stack.ready_file, self.ready)
        log.info("ready: regions %s", ", ".join(options.regions))
        return self.ready

    def _start_databases(self) -> dict[str, dynamodb.MotoServer | dynamodb.DynamoDBLocal]:
        """One DynamoDB per region, started side by side."""
        stack = self.options.stack
        with concurrent.futures.ThreadPoolExecutor(len(self.options.regions)) as pool:
            futures = {
                region: pool.submit(dynamodb.start, stack.dynamodb, stack.host, region)
                for region in self.options.regions
            }
        databases, failure = {}, None
        for region, future in futures.items():
            try:
                databases[region] = future.result()
            except dynamodb.DynamoDBUnavailable as error:
                failure = error
        if failure is not None:
            for database in databases.values():
                database.stop()
            raise StartupError(str(failure))
        return databases

    def _start_control(self) -> str:
        """The control API on a port of its own: it answers while any region is stopped."""
        host = self.options.stack.host
        self._control = HttpServer(
            host,
            0,
            lambda method, path: HttpResponse(404),
            intercept=lambda method, path, body: region_control.handle(self, method, path, body),
        )
        self._control.start(_NoConnections())
        return f"http://{host}:{self._control.port}{PREFIX}"

    # --- the control API (`region_control.Regions`) -----------------------------------

    def state(self) -> dict[str, Any]:
        replicator = self._replicator
        return {
            "regions": {
                region: {"state": RUNNING if p.running else STOPPED, "pid": p.pid}
                for region, p in self._processes.items()
            },
            "replication": {
                "lag_s": replicator.lag_s if replicator else None,
                "isolated": list(replicator.isolated) if replicator else [],
                "converged": replicator.converged() if replicator else False,
            },
        }

    def set_region(self, region: str, state: str, graceful: bool = False) -> None:
        process = self._processes.get(region)
        if process is None:
            raise ValueError(f"not a region of this stack: {region!r}")
        with self._changing:
            if state == STOPPED:
                process.stop(graceful)
                log.info("region %s stopped", region)
            elif not process.running:
                process.start()
                log.info("region %s started again", region)

    def set_replication(
        self, lag_s: float | None, region: str | None = None, connected: bool | None = None
    ) -> None:
        assert self._replicator is not None, "start() first"
        if lag_s is not None:
            self._replicator.lag_s = lag_s
        if region is not None:
            if connected:
                self._replicator.reconnect(region)
            else:
                self._replicator.isolate(region)

    # --- stopping -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the regions (each as SIGTERM stops a stack), then replication and DynamoDB."""
        if self._closed:
            return
        self._closed = True
        with concurrent.futures.ThreadPoolExecutor(max(1, len(self._processes))) as pool:
            list(pool.map(lambda p: p.stop(graceful=True), self._processes.values()))
        if self._control is not None:
            self._control.close()
        if self._replicator is not None:
            self._replicator.stop()
        for database in self._databases.values():
            database.stop()
        ready_file = self.options.stack.ready_file
        if ready_file is not None and self.ready:
            ready_file.unlink(missing_ok=True)
        shutil.rmtree(self._directory, ignore_errors=True)


def serve(options: RegionsOptions, announce) -> None:
    """Run until SIGINT or SIGTERM."""
    stack = MultiRegionStack(options)
    stop = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop.set())
    try:
        announce(stack.start())
        while not stop.wait(0.5):
            pass
    finally:
        stack.close()
