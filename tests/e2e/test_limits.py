"""API Gateway's WebSocket limits: 128 KiB messages, idle timeout, maximum duration."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import LocalStack, start_stack
from tests.e2e.wire import open_socket, receive, run, send, unique

pytestmark = pytest.mark.e2e

MAX_MESSAGE = 128 * 1024
IDLE_TIMEOUT_S = 1.0
MAX_DURATION_S = 3.0


def _echo_frame(size: int) -> str:
    """An `echo` message of exactly `size` bytes."""
    frame = json.dumps({"action": "echo", "payload": {"fill": ""}})
    return frame.replace('""', '"' + "x" * (size - len(frame)) + '"')


def test_message_over_128_kib_closes_the_connection_with_1009(local_stack: LocalStack) -> None:
    async def scenario() -> tuple[dict, int | None]:
        async with open_socket(local_stack.url(local_stack.dev_token)) as socket:
            # GIVEN a message of exactly the limit is still answered
            await socket.send(_echo_frame(MAX_MESSAGE))
            at_limit = await receive(socket)
            # WHEN one byte more arrives
            await socket.send(_echo_frame(MAX_MESSAGE + 1))
            # THEN the gateway closes the connection with 1009 (message too big)
            with pytest.raises(ConnectionClosed):
                await receive(socket)
            return at_limit, socket.protocol.close_rcvd and socket.protocol.close_rcvd.code

    at_limit, close_code = run(scenario())
    assert at_limit["type"] in ("response", "error")
    assert close_code == 1009


@pytest.fixture(scope="module")
def short_limits_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with start_stack(
        tmp_path_factory.mktemp("short-limits"),
        "--idle-timeout",
        str(IDLE_TIMEOUT_S),
        "--max-duration",
        str(MAX_DURATION_S),
    ) as stack:
        yield stack


def _closed_by_gateway(socket) -> tuple[int | None, str | None]:
    close = socket.protocol.close_rcvd
    return (close.code, close.reason) if close else (None, None)


def test_idle_connection_is_closed_with_1001(short_limits_stack: LocalStack) -> None:
    user = unique("idle")
    token = short_limits_stack.token(user, "tenant-e2e")

    async def scenario() -> tuple[float, tuple]:
        async with open_socket(short_limits_stack.url(token)) as socket:
            opened = time.monotonic()
            await socket.wait_closed()
            return time.monotonic() - opened, _closed_by_gateway(socket)

    idle_for, (code, _) = run(scenario())
    assert code == 1001
    assert IDLE_TIMEOUT_S * 0.9 <= idle_for < MAX_DURATION_S


def test_busy_connection_is_closed_at_the_maximum_duration(short_limits_stack: LocalStack) -> None:
    token = short_limits_stack.token(unique("busy"), "tenant-e2e")

    async def scenario() -> tuple[float, int, tuple]:
        async with open_socket(short_limits_stack.url(token)) as socket:
            opened = time.monotonic()
            pongs = 0
            # Never idle: a ping every third of the idle timeout.
            with pytest.raises(ConnectionClosed):
                while True:
                    await send(socket, {"action": "ping"})
                    assert (await receive(socket))["type"] == "pong"
                    pongs += 1
                    await asyncio.sleep(IDLE_TIMEOUT_S / 3)
            return time.monotonic() - opened, pongs, _closed_by_gateway(socket)

    lived, pongs, (code, _) = run(scenario())
    assert code == 1001
    assert MAX_DURATION_S * 0.9 <= lived < MAX_DURATION_S + IDLE_TIMEOUT_S
    assert pongs > MAX_DURATION_S / IDLE_TIMEOUT_S
