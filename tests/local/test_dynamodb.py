"""The local stack's moto server: a child process that answers, stops, and ends with the stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from botocore.exceptions import BotoCoreError

from local import dynamodb

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


def answers(endpoint_url: str) -> bool:
    try:
        dynamodb.client("dynamodb", endpoint_url, REGION).list_tables(Limit=1)
    except BotoCoreError:
        return False
    return True


def test_moto_runs_in_another_process_and_stops():
    server = dynamodb.MotoServer("127.0.0.1", REGION)
    try:
        assert answers(server.endpoint_url)
        tables = dynamodb.create_tables(
            server.endpoint_url, REGION, {"connections": "c", "requests": "r", "subscriptions": "s"}
        )
        assert list(tables) == ["r"]
    finally:
        server.stop()
    assert not answers(server.endpoint_url)


def start_stack_process() -> tuple[subprocess.Popen, str]:
    """A process, in a session of its own, that started a moto server and ignores Ctrl-C."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGINT, lambda *_: None); "
            "from local import dynamodb; "
            "s = dynamodb.MotoServer('127.0.0.1'); print(s.endpoint_url, flush=True); "
            "time.sleep(60)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    endpoint_url = parent.stdout.readline().strip()
    assert answers(endpoint_url)
    return parent, endpoint_url


def test_moto_ends_when_the_stack_is_killed():
    # GIVEN a process that started a moto server
    parent, endpoint_url = start_stack_process()

    # WHEN it is killed without a chance to stop its children
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()

    # THEN its moto server goes too
    deadline = time.monotonic() + 10
    while answers(endpoint_url) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not answers(endpoint_url)


def test_ctrl_c_at_the_terminal_leaves_moto_to_the_stack():
    # GIVEN a stack process and its moto server
    parent, endpoint_url = start_stack_process()
    try:
        # WHEN the terminal sends SIGINT to the stack's process group (Ctrl-C)
        os.killpg(parent.pid, signal.SIGINT)
        time.sleep(1)

        # THEN moto still answers: the stack shuts down first and stops it last
        assert answers(endpoint_url)
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
