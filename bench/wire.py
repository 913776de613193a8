"""The benchmark's side of the socket: bare `websockets` clients and timed exchanges.

The benchmark speaks the wire protocol directly rather than through
`client/`, so what it times is the server, not a client library's matching
and reconnect logic.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect


async def open_connection(url: str) -> ClientConnection:
    return await connect(url, compression=None, ping_interval=None, max_size=None, open_timeout=120)


async def open_connections(urls: Sequence[str], concurrency: int = 50) -> list[ClientConnection]:
    """Connect to every URL, at most `concurrency` handshakes at a time, in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(url: str) -> ClientConnection:
        async with gate:
            return await open_connection(url)

    return list(await asyncio.gather(*(one(url) for url in urls)))


async def close_all(sockets: Sequence[ClientConnection]) -> None:
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


async def round_trips(socket: ClientConnection, frame: str, until: float) -> list[float]:
    """Send `frame` and wait for the answer, again and again until `until` (monotonic).

    Returns each round trip in milliseconds.
    """
    latencies = []
    while time.monotonic() < until:
        sent = time.perf_counter()
        await socket.send(frame)
        await socket.recv()
        latencies.append((time.perf_counter() - sent) * 1000)
    return latencies


@dataclass
class AsyncCall:
    """One async request as the client saw it; times are `time.time()` seconds."""

    request_id: str
    sent_at: float
    acknowledged_at: float | None = None
    completed_at: float | None = None
    status: str | None = None
    #: (received at, percentage) of every `progress` message, in order.
    progress: list[tuple[float, float]] = field(default_factory=list)
    other: list[dict] = field(default_factory=list)


async def call_async(
    socket: ClientConnection, action: str, request_id: str, payload: dict, timeout_s: float = 120
) -> AsyncCall:
    """Send one async request and read until its `complete`."""
    call = AsyncCall(request_id, time.time())
    await socket.send(json.dumps({"action": action, "id": request_id, "payload": payload}))
    deadline = time.monotonic() + timeout_s
    while call.completed_at is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            raw = await asyncio.wait_for(socket.recv(), remaining)
        except TimeoutError:
            break
        received = time.time()
        message = json.loads(raw)
        kind = message.get("type")
        if kind == "acknowledgment":
            call.acknowledged_at = received
        elif kind == "progress":
            call.progress.append((received, float(message["percentage"])))
        elif kind == "complete":
            call.completed_at = received
            call.status = message.get("status")
        elif kind == "error":
            # Refused: no `complete` will come.
            call.status = f"ERROR {message.get('error', {}).get('code')}"
            call.other.append(message)
            break
        else:
            call.other.append(message)
    return call
