"""The fault-injection suite's stack: `python -m local --faults`, with leases short enough to test.

The processor's timeout is a few seconds and the lease margin one second, so
a killed worker's request is re-driven within seconds; the sweeper runs twice
a second. The stack runs `tests.faults.app`, which journals every handler
run to a file the tests read.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from streamer import config
from streamer.models import owner_key, request_key
from tests.e2e.conftest import LocalStack, start_stack
from tests.e2e.wire import ask, open_socket, receive, run
from tests.faults.app import RUN_LOG, STARTED

#: Seconds: the processor's timeout, and the margin a lease adds to it.
PROCESSOR_TIMEOUT_S = 5
LEASE_MARGIN_S = 1
#: The tenant of every user the suite makes up.
TENANT = "faults"
#: Attributes of a request the runtime stores as JSON text.
JSON_ATTRIBUTES = {"payload", "metadata", "result", "error", "checkpoint"}


class FaultRefused(Exception):
    """The `/_faults` API answered something other than 200."""

    def __init__(self, status: int, answer: dict) -> None:
        super().__init__(f"{status}: {answer}")
        self.status = status
        self.answer = answer


def post_command(url: str, fields: dict[str, Any], *, timeout: float) -> dict:
    """POST `fields` as JSON to a control API; its JSON answer, or `FaultRefused`."""
    request = urllib.request.Request(
        url,
        data=json.dumps(fields).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as error:
        raise FaultRefused(error.code, json.load(error)) from None


@dataclass
class FaultyStack:
    """A stack started with `--faults`, and ways to break it and look inside."""

    stack: LocalStack
    journal: Path

    def fault(self, command: str, **fields: Any) -> dict:
        """POST one command to `/_faults/{command}`; its JSON answer."""
        return post_command(f"{self.stack.ready['faults_url']}/{command}", fields, timeout=10)

    def state(self) -> dict:
        with urllib.request.urlopen(self.stack.ready["faults_url"], timeout=10) as answer:
            return json.load(answer)

    def runs(self, request_ids: set[str] | str, phase: str = STARTED) -> list[dict]:
        """Handler runs of these requests, in the order they started (`FINISHED`: the
        runs whose handler returned, in the order they did)."""
        return journal_runs(self.journal, request_ids, phase)

    def request(self, tenant: str, user: str, request_id: str) -> dict | None:
        """The stored request item, read consistently, as Python values (numbers are Decimal)."""
        answer = self.stack.client("dynamodb").get_item(
            TableName=self.stack.ready["tables"]["requests"],
            Key={"request_key": {"S": request_key(owner_key(tenant, user), request_id)}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        if item is None:
            return None
        deserializer = TypeDeserializer()
        values = {name: deserializer.deserialize(value) for name, value in item.items()}
        for name in JSON_ATTRIBUTES & values.keys():
            values[name] = json.loads(values[name])
        return values

    def connect(self, user: str) -> Any:
        """A new WebSocket connection of `user` (an async context manager)."""
        return open_socket(self.stack.url(self.stack.token(user, TENANT)))

    def run_request(self, user: str, request_id: str, action: str, payload: dict) -> list[dict]:
        """Send an async request on a new connection; every frame about it up to its complete."""

        async def scenario() -> list[dict]:
            async with self.connect(user) as socket:
                await send_request(socket, action, request_id, payload)
                return await frames_until_complete(socket, request_id)

        return run(scenario())

    def drop_connection(self, connection_id: str) -> None:
        """Close a connection from the server side, as API Gateway's DeleteConnection does.

        Call it from a thread when the client runs on this thread's event loop:
        the close handshake needs the client to answer.
        """
        api = self.stack.client("apigatewaymanagementapi")
        # Closed already (the client left at the same moment): the goal is met.
        with contextlib.suppress(api.exceptions.GoneException):
            api.delete_connection(ConnectionId=connection_id)

    def connection_ids(self, user: str) -> list[str]:
        return [
            item["connection_id"]["S"] for item in self.stack.items_of_user("connections", user)
        ]


def journal_runs(journal: Path, request_ids: set[str] | str, phase: str = STARTED) -> list[dict]:
    """The runs `tests.faults.app` journaled at `journal` for these requests, in one phase."""
    wanted = {request_ids} if isinstance(request_ids, str) else request_ids
    if not journal.exists():
        return []
    lines = journal.read_text().splitlines()
    return [
        run
        for run in map(json.loads, lines)
        if run["request_id"] in wanted and run.get("phase", STARTED) == phase
    ]


async def send_request(socket: Any, action: str, request_id: str, payload: dict) -> None:
    """Send an application request, and check it was acknowledged."""
    answer = await ask(socket, {"action": action, "id": request_id, "payload": payload})
    assert answer["type"] == "acknowledgment", answer


async def frames_until_complete(socket: Any, request_id: str, timeout: float = 30) -> list[dict]:
    """Every frame about `request_id` up to and including its `complete`."""
    frames: list[dict] = []
    while not frames or frames[-1]["type"] != "complete":
        frame = await receive(socket, timeout=timeout)
        if frame.get("request_id") == request_id:
            frames.append(frame)
    return frames


def assert_seq_grows(frames: list[dict]) -> None:
    """Each `progress` and `complete` carries a `seq` above every earlier one."""
    sequence = [f["seq"] for f in frames if f["type"] in ("progress", "complete")]
    assert sequence == sorted(set(sequence)), sequence


@pytest.fixture(scope="session")
def faulty_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyStack]:
    directory = tmp_path_factory.mktemp("faults-stack")
    journal = directory / "runs.jsonl"
    with contextlib.ExitStack() as running:
        # The stack reads these when it starts; later stacks of the session must not.
        with pytest.MonkeyPatch.context() as environment:
            environment.setenv(config.LEASE_MARGIN_S, str(LEASE_MARGIN_S))
            environment.setenv(RUN_LOG, str(journal))
            # Actions here fail on purpose (the soak's `explode` every time): the circuit
            # breaker would refuse them; test_circuit_breaker.py runs a stack of its own.
            environment.setenv(config.CIRCUIT_FAILURE_RATIO, "0")
            stack = running.enter_context(
                start_stack(
                    directory,
                    "--faults",
                    "--app",
                    "tests.faults.app",
                    "--processor-timeout",
                    str(PROCESSOR_TIMEOUT_S),
                    "--sweep-interval",
                    "0.5",
                    # Each lane's invocations run in a worker process: few, on a small
                    # machine, with small batches, so a loaded one finishes in the timeout.
                    "--parallelization-factor",
                    "4",
                    "--batch-size",
                    "3",
                )
            )
        yield FaultyStack(stack, journal)
