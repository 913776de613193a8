"""The circuit breaker on the local stack: an action failing every run is refused, then recovers.

A stack of its own, with a short window and open time: the session's stack
turns the breaker off, since its actions fail on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client import StreamerClient, StreamerError, Unavailable
from streamer import config
from tests.e2e.conftest import start_stack
from tests.e2e.wire import eventually, receive, run, send, unique
from tests.faults.app import BREAK_FILE, RUN_LOG
from tests.faults.conftest import (
    LEASE_MARGIN_S,
    PROCESSOR_TIMEOUT_S,
    TENANT,
    FaultyStack,
    frames_until_complete,
)

pytestmark = pytest.mark.faults

WINDOW_S = 10
MINIMUM_CALLS = 4
OPEN_S = 4
#: Requests sent, one every PACE_S, before the test gives up waiting for a refusal.
MAX_REQUESTS = 60
PACE_S = 0.2
ENDED = {"COMPLETED", "FAILED"}


@pytest.fixture(scope="module")
def breaking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaultyStack, Path]]:
    """A `--faults` stack whose breaker opens after a few failures; and `fragile`'s break file."""
    directory = tmp_path_factory.mktemp("breaker-stack")
    journal, break_file = directory / "runs.jsonl", directory / "broken"
    with contextlib.ExitStack() as running:
        with pytest.MonkeyPatch.context() as environment:
            environment.setenv(config.LEASE_MARGIN_S, str(LEASE_MARGIN_S))
            environment.setenv(RUN_LOG, str(journal))
            environment.setenv(BREAK_FILE, str(break_file))
            environment.setenv(config.CIRCUIT_WINDOW_S, str(WINDOW_S))
            environment.setenv(config.CIRCUIT_FAILURE_RATIO, "0.5")
            environment.setenv(config.CIRCUIT_MINIMUM_CALLS, str(MINIMUM_CALLS))
            environment.setenv(config.CIRCUIT_OPEN_S, str(OPEN_S))
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
                    "--parallelization-factor",
                    "2",
                    "--batch-size",
                    "3",
                )
            )
        yield FaultyStack(stack, journal), break_file


async def answer_to(socket: Any, request_id: str) -> dict:
    """Ask for `fragile` under `request_id`; its acknowledgment or error (other frames skipped)."""
    await send(socket, {"action": "fragile", "id": request_id, "payload": {}})
    while True:
        frame = await receive(socket)
        if frame.get("request_id") == request_id and frame["type"] in ("acknowledgment", "error"):
            return frame


def test_a_failing_action_is_refused_unavailable_then_recovers(breaking) -> None:
    faulty, break_file = breaking
    user = unique("breaker")

    async def until_refused(socket: Any) -> tuple[list[str], dict, list[dict]]:
        acknowledged: list[str] = []
        for _ in range(MAX_REQUESTS):
            request_id = unique("fragile")
            answer = await answer_to(socket, request_id)
            if answer["type"] == "error":
                # Refused: the next few, sent at once, are refused too.
                more = [await answer_to(socket, unique("fragile")) for _ in range(3)]
                return acknowledged, answer, more
            acknowledged.append(request_id)
            await asyncio.sleep(PACE_S)
        raise AssertionError(f"{MAX_REQUESTS} requests of a failing action were all accepted")

    async def until_accepted(socket: Any) -> list[dict]:
        """Ask as a client does: after each UNAVAILABLE, wait `retry_after_ms` and ask again."""
        for _ in range(MAX_REQUESTS):
            request_id = unique("fragile")
            answer = await answer_to(socket, request_id)
            if answer["type"] == "acknowledgment":
                return await frames_until_complete(socket, request_id)
            assert answer["error"]["code"] == "UNAVAILABLE", answer
            await asyncio.sleep(answer["error"]["details"]["retry_after_ms"] / 1000)
        raise AssertionError("the action was never accepted again")

    async def scenario() -> tuple[list[str], dict, list[dict], list[dict], list[dict]]:
        async with faulty.connect(user) as socket:
            # GIVEN fragile's dependency is down: every run fails
            break_file.touch()
            # WHEN requests for it keep coming
            acknowledged, refused, more = await until_refused(socket)
            # AND then the dependency is back
            break_file.unlink()
            first = await until_accepted(socket)
            second_id = unique("fragile")
            second = await answer_to(socket, second_id)
            assert second["type"] == "acknowledgment", second
            second_frames = await frames_until_complete(socket, second_id)
            return acknowledged, refused, more, first, second_frames

    acknowledged, refused, more, first, second = run(scenario())

    # THEN within the window the action was refused at once, UNAVAILABLE and retryable,
    # with the time until it half-opens; the refused requests were never stored or run
    for answer in (refused, *more):
        error = answer["error"]
        assert error["code"] == "UNAVAILABLE" and error["retryable"] is True, answer
        assert 0 < error["details"]["retry_after_ms"] <= OPEN_S * 1000
        assert faulty.request(TENANT, user, answer["request_id"]) is None
        assert faulty.runs(answer["request_id"]) == []
    assert MINIMUM_CALLS <= len(acknowledged) < MAX_REQUESTS
    # AND once the open time passed with the fault gone, requests complete again
    assert first[-1]["status"] == "COMPLETED" and first[-1]["result"] == {"fragile": "ok"}
    assert second[-1]["status"] == "COMPLETED"

    # AND every request accepted meanwhile ended: those that waited ran after the recovery
    async def statuses() -> list[str | None]:
        items = [faulty.request(TENANT, user, rid) for rid in acknowledged]
        return [item and item["status"] for item in items]

    ended = run(eventually(statuses, lambda found: set(found) <= ENDED, timeout=30))
    assert "FAILED" in ended


def test_the_python_client_gets_an_open_circuit_as_a_retryable_unavailable(breaking) -> None:
    faulty, break_file = breaking
    user = unique("breaker-client")

    async def scenario() -> Unavailable:
        token = faulty.stack.token(user, TENANT)
        async with StreamerClient(
            faulty.stack.websocket_url,
            token,
            heartbeat_interval=None,
            # Shorter than the circuit's open time: the deadline passes while it is open.
            unavailable_deadline_s=0.5,
        ) as client:
            # GIVEN fragile fails every run
            break_file.touch()
            try:
                # WHEN the client keeps calling it
                for _ in range(MAX_REQUESTS):
                    try:
                        await client.call("fragile", {})
                    except Unavailable as error:
                        return error
                    except StreamerError as error:
                        assert error.code == "PROCESSING_FAILED", error
                    await asyncio.sleep(PACE_S)
            finally:
                break_file.unlink()
        raise AssertionError(f"{MAX_REQUESTS} calls of a failing action were all accepted")

    error = run(scenario())

    # THEN once the circuit opened, the caller got the server's UNAVAILABLE, retryable, with
    # the time until the circuit half-opens: longer than the client's deadline, so the
    # client did not send it again (a resend must wait `retry_after_ms`)
    assert (error.code, error.retryable) == ("UNAVAILABLE", True)
    assert "failing and refused for now" in error.message
    assert 0 < error.details["retry_after_ms"] <= OPEN_S * 1000
    assert error.request_id is not None
    assert faulty.request(TENANT, user, error.request_id) is None
