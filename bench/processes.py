"""The servers a benchmark drives, each in a process of its own: the local stack and the baseline.

Every server writes a ready file when it listens; the benchmark waits for
that file (never a fixed sleep) and stops the server with SIGTERM.
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

from bench.machine import ROOT
from local import dynamodb, tokens
from local.calls import ENV as CALL_LOG_ENV

START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 60


class ServerFailed(RuntimeError):
    """A server exited or did not become ready; the message holds the end of its log."""


@dataclass
class Server:
    """A running server: its ready file's content and its process."""

    ready: dict
    process: subprocess.Popen
    log_file: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def websocket_url(self) -> str:
        return self.ready["websocket_url"]

    def token(self, sub: str, tenant: str = "bench") -> str:
        """A token of the local stack's dev key for user `sub` of `tenant`."""
        key = Path(self.ready["dev_key_file"]).read_bytes()
        return tokens.mint(
            key,
            sub,
            tenant,
            3600,
            issuer=self.ready["jwt_issuer"],
            audience=self.ready["jwt_audience"],
        )

    def url(self, token: str) -> str:
        return f"{self.websocket_url}?token={quote(token)}"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def running(
    command: list[str], directory: Path, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> Iterator[Server]:
    """Run `command` (given `--ready-file PATH` last) in `cwd` until the block ends."""
    directory.mkdir(parents=True, exist_ok=True)
    ready_file = directory / "ready.json"
    log_file = directory / "server.log"
    ready_file.unlink(missing_ok=True)
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--ready-file", str(ready_file)],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready_file.exists():
            if process.poll() is not None:
                raise ServerFailed(f"{command} exited {process.returncode}:\n{_tail(log_file)}")
            if time.monotonic() > deadline:
                raise ServerFailed(f"{command} was not ready in time:\n{_tail(log_file)}")
            time.sleep(0.05)
        yield Server(json.loads(ready_file.read_text()), process, log_file)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def local_stack(
    directory: Path,
    *flags: str,
    env: dict[str, str] | None = None,
    counts_file: Path | None = None,
    call_log: Path | None = None,
    tree: Path = ROOT,
):
    """`python -m local --port 0 FLAGS` with the benchmark app, as a context manager.

    `tree`: the checkout whose stack and runtime run (another one is put first on the
    stack's `PYTHONPATH`, before this environment's install of the runtime).

    With `counts_file`, the stack runs under `bench.counting`, which keeps that
    file up to date with the AWS calls and Lambda invocations it made; its meters
    live in the stack's process, so the functions then run in its threads
    (`--invocations threads`). With `call_log`, every DynamoDB call of every function
    is logged there (`local.calls`).
    """
    launcher = ["local"]
    if counts_file is not None:
        launcher = ["bench.counting", str(counts_file), "--invocations", "threads"]
    command = [sys.executable, "-m", *launcher, "--port", "0", "--app", "bench.app", *flags]
    if call_log is not None:
        env = {**(env or {}), CALL_LOG_ENV: str(call_log)}
    if tree != ROOT:
        env = {**(env or {}), "PYTHONPATH": os.pathsep.join([str(tree / "lambdas"), str(tree)])}
    return running(command, directory, env, cwd=tree)


def echo_server(directory: Path):
    """The baseline: a bare `websockets` echo server (`python -m bench.echo_server`)."""
    return running([sys.executable, "-m", "bench.echo_server"], directory)


def best_dynamodb() -> str:
    """DynamoDB Local when installed (AWS's engine: real indexes, capacity units), else moto."""
    try:
        dynamodb.require_dynamodb_local()
    except dynamodb.DynamoDBUnavailable:
        return dynamodb.MOTO
    return dynamodb.DYNAMODB_LOCAL


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def environment_pids(pid: int) -> list[int]:
    """The stack's execution environments and the zygote they are forked from."""
    found = []
    pending = _children(pid)
    while pending:
        child = pending.pop()
        if "local.zygote" in _command_line(child):
            found.append(child)
            pending += _children(child)
    return found


def pss_bytes(pid: int) -> int:
    """Proportional set size (pages shared with other processes divided among them)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def environments_memory(pid: int) -> dict:
    """How many execution environments the stack runs now, and their memory (PSS, zygote
    included: the environments share its pages)."""
    pids = environment_pids(pid)
    return {"processes": len(pids), "pss_bytes": sum(pss_bytes(p) for p in pids)}


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ServerFailed(f"no VmRSS for process {pid}")
