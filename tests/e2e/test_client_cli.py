"""`python -m client` as a user runs it, against the real local stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.e2e.conftest import ROOT, LocalStack

pytestmark = pytest.mark.e2e


def run_client(stack: LocalStack, *args: str) -> subprocess.CompletedProcess:
    assert stack.dev_token is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env |= {"STREAMER_URL": stack.websocket_url, "STREAMER_TOKEN": stack.dev_token}
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_client_cli_calls_echo(local_stack: LocalStack) -> None:
    # GIVEN the running stack and its dev token
    # WHEN the CLI calls the sync echo action
    done = run_client(local_stack, "call", "echo", "--payload", '{"hello": "world"}')
    # THEN the data is printed as JSON and the exit code is 0
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"echo": {"hello": "world"}}


def test_client_cli_runs_a_report_to_its_result(local_stack: LocalStack) -> None:
    # GIVEN the running stack
    payload = json.dumps({"pages": 3, "page_ms": 50})
    # WHEN the CLI calls the async report with a chosen id
    done = run_client(
        local_stack, "call", "generate_report", "--payload", payload, "--id", "cli-e2e"
    )
    # THEN the result is printed, progress came as plain lines up to 100 %,
    # and the stored request is COMPLETED with that result
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["pages"] == 3
    lines = done.stderr.splitlines()
    assert lines, "no progress lines"
    assert all(re.fullmatch(r"\d{1,3}% page [1-3] of 3", line) for line in lines), lines
    percentages = [int(line.split("%")[0]) for line in lines]
    assert percentages == sorted(percentages)
    assert lines[-1] == "100% page 3 of 3"
    status = run_client(local_stack, "status", "cli-e2e")
    assert status.returncode == 0, status.stderr
    snapshot = json.loads(status.stdout)
    assert (snapshot["status"], snapshot["result"]) == ("COMPLETED", result)
