"""Talking to the stack over a real WebSocket, with the bare `websockets` client."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect

RECEIVE_TIMEOUT_S = 15
T = TypeVar("T")


def run(coroutine: Awaitable[T]) -> T:
    """`asyncio.run` that leaves the thread's current event loop alone.

    `asyncio.run` unsets it when it ends, and code run later in the same
    process (Pulumi's mocks, in the infrastructure tests) still asks for it.
    """
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(coroutine)


def unique(prefix: str) -> str:
    """A user or tenant id no other test uses, so table scans find only this test's items."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def open_socket(url: str) -> Any:
    """Connect as a plain client: no compression offered, default limits."""
    return connect(url, compression=None, open_timeout=RECEIVE_TIMEOUT_S)


async def send(socket: ClientConnection, message: dict[str, Any]) -> None:
    await socket.send(json.dumps(message))


async def receive(socket: ClientConnection, timeout: float = RECEIVE_TIMEOUT_S) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


async def ask(socket: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    """Send one message and return the first answer."""
    await send(socket, message)
    return await receive(socket)


async def run_async_request(
    socket: ClientConnection, action: str, payload: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Send an async request; return its acknowledgment and every message up to `complete`."""
    acknowledgment = await ask(socket, {"action": action, "payload": payload})
    assert acknowledgment["type"] == "acknowledgment", acknowledgment
    updates = []
    while True:
        message = await receive(socket)
        if message.get("request_id") == acknowledgment["request_id"]:
            updates.append(message)
        if message["type"] == "complete":
            return acknowledgment, updates


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout: float = 30,
    interval: float = 0.1,
) -> T:
    """Call `probe` until `done` holds for its value; fail with the last value at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"condition never held; last value: {value!r}"
        await asyncio.sleep(interval)
