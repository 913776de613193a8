"""A store outage is answered, not hung: DynamoDB stops answering, the client still hears back.

The stack's DynamoDB (moto's server or DynamoDB Local, a child process of the
stack) is paused with SIGSTOP: its socket still accepts connections, but
nothing answers them, as when DynamoDB is unreachable behind a network that
drops packets. The router gives up within its call budget and answers
`UNAVAILABLE` for the client's request, well before API Gateway's 29 s would
cut it off with a bare "Internal server error".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import LocalStack, start_stack
from tests.e2e.wire import ask, open_socket, receive, run, send, unique

pytestmark = pytest.mark.faults

#: Longer than the router's call budget, shorter than API Gateway's 29 s: a hang fails.
ANSWER_TIMEOUT_S = 20
#: What the stack's DynamoDB child runs, for either engine.
DATABASE_COMMANDS = (b"local.moto_child", b"DynamoDBLocal.jar")


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # The parent pid is the 2nd field after the command, which is in parentheses.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


def database_pid(stack: LocalStack) -> int:
    """The pid of the stack's DynamoDB child process."""
    for child in _children(stack.process.pid):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            if any(name in command for name in DATABASE_COMMANDS):
                return child
    raise AssertionError("the stack has no DynamoDB child process")


@contextlib.contextmanager
def dynamodb_paused(stack: LocalStack) -> Iterator[None]:
    """DynamoDB accepts connections but answers nothing until the block ends."""
    pid = database_pid(stack)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_request_during_an_outage_is_answered_unavailable_with_its_id(tmp_path: Path):
    with start_stack(tmp_path / "stack") as stack:
        user, tenant = unique("outage"), unique("tenant")

        async def scenario() -> tuple[dict, dict]:
            async with open_socket(stack.url(stack.token(user, tenant))) as socket:
                assert (await ask(socket, {"action": "ping"}))["type"] == "pong"
                message = {"action": "echo", "id": "during-outage", "payload": {"n": 1}}
                # GIVEN DynamoDB stops answering
                with dynamodb_paused(stack):
                    # WHEN the client sends a request with an id
                    await send(socket, message)
                    during = await receive(socket, timeout=ANSWER_TIMEOUT_S)
                # and sends it again once DynamoDB is back. The router's put may have
                # reached DynamoDB and been stored after its client gave up, as on AWS
                # (a timed-out write may have been applied): the repeat is then told
                # when the id frees up, and runs then.
                after = await ask(socket, message)
                for _ in range(3):
                    if after.get("type") != "error" or after["error"]["code"] != "CONFLICT":
                        break
                    assert after["request_id"] == "during-outage"
                    await asyncio.sleep(after["error"]["details"]["retry_after_ms"] / 1000)
                    after = await ask(socket, message)
                return during, after

        during, after = run(scenario())

    # THEN it was answered UNAVAILABLE for its request, retryable after a delay
    assert during["type"] == "error", during
    assert during["request_id"] == "during-outage"
    assert during["error"]["code"] == "UNAVAILABLE"
    assert during["error"]["retryable"] is True
    assert during["error"]["details"]["retry_after_ms"] > 0
    # and the retry after the outage runs it: what the failed attempt kept does not block it
    assert after == {
        "type": "response",
        "request_id": "during-outage",
        "success": True,
        "data": {"echo": {"n": 1}},
    }
