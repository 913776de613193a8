"""The local stack as the end-to-end tests see it: `python -m local` in a subprocess.

`local_stack` starts one stack for the session on free ports and waits for
its ready file (never a fixed sleep); `start_stack` starts others with their
own flags. `STREAMER_TEST_DYNAMODB=dynamodb-local` runs them all on DynamoDB
Local instead of moto. Every stack must exit 0 on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import boto3
import pytest

from local import tokens

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 60


@dataclass
class LocalStack:
    """A running stack: its ready file's fields, and ways into it for tests."""

    ready: dict
    process: subprocess.Popen
    log_file: Path

    @property
    def websocket_url(self) -> str:
        return self.ready["websocket_url"]

    @property
    def management_url(self) -> str:
        return self.ready["management_url"]

    @property
    def http_url(self) -> str:
        return self.ready["http_url"]

    @property
    def dev_token(self) -> str | None:
        return self.ready.get("dev_token")

    def token(
        self, sub: str, tenant: str, ttl: int = 3600, permissions: list[str] | None = None
    ) -> str:
        """A token signed with the stack's dev key (negative `ttl`: already expired)."""
        key = Path(self.ready["dev_key_file"]).read_bytes()
        return tokens.mint(
            key,
            sub,
            tenant,
            ttl,
            permissions,
            issuer=self.ready["jwt_issuer"],
            audience=self.ready["jwt_audience"],
        )

    def url(self, token: str | None) -> str:
        """The WebSocket URL with `?token=`, as a browser would connect."""
        return self.websocket_url if token is None else f"{self.websocket_url}?token={quote(token)}"

    def client(self, service: str):
        """A boto3 client for this stack's DynamoDB or its management API."""
        endpoint = (
            self.management_url
            if service == "apigatewaymanagementapi"
            else self.ready["dynamodb_endpoint"]
        )
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=self.ready["region"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def items(self, logical_table: str) -> list[dict]:
        """Every item of one of the stack's tables (`connections`, `requests`, ...)."""
        dynamodb = self.client("dynamodb")
        pages = dynamodb.get_paginator("scan").paginate(
            TableName=self.ready["tables"][logical_table], ConsistentRead=True
        )
        return [item for page in pages for item in page["Items"]]

    def items_of_user(self, logical_table: str, user_id: str) -> list[dict]:
        return [
            item
            for item in self.items(logical_table)
            if item.get("user_id", {}).get("S") == user_id
        ]


def _wait_for_ready_file(path: Path, process: subprocess.Popen, log_file: Path) -> dict:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(
                f"python -m local exited {process.returncode} before it was ready:\n"
                + log_file.read_text()
            )
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("python -m local was not ready in time:\n" + log_file.read_text())
        time.sleep(0.05)
    return json.loads(path.read_text())


def dynamodb_args() -> list[str]:
    """`--dynamodb` as `STREAMER_TEST_DYNAMODB` asks (moto by default)."""
    engine = os.environ.get("STREAMER_TEST_DYNAMODB", "").strip()
    return ["--dynamodb", engine] if engine else []


@contextmanager
def start_stack(directory: Path, *args: str) -> Iterator[LocalStack]:
    """Run `python -m local --port 0 ARGS` until the block ends; then SIGTERM, expect exit 0."""
    directory.mkdir(parents=True, exist_ok=True)
    ready_file = directory / "ready.json"
    log_file = directory / "stack.log"
    command = [sys.executable, "-m", "local", "--port", "0", "--ready-file", str(ready_file)]
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [*command, *dynamodb_args(), *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        stack = LocalStack(_wait_for_ready_file(ready_file, process, log_file), process, log_file)
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    assert code == 0, f"python -m local exited {code}:\n{log_file.read_text()}"
    assert not ready_file.exists(), "the ready file outlived the stack"


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One stack with the dev key for the whole session."""
    with start_stack(tmp_path_factory.mktemp("local-stack")) as stack:
        yield stack
