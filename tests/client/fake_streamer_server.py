"""A scripted Streamer server for the client's tests (test code, never shipped).

It speaks docs/protocol.md over real sockets on 127.0.0.1 (sync `echo`, async
`generate_report` with progress and complete, system actions, errors, 401 and
403 handshakes), and lets a test step in at exact points (drop every
connection, hold handshakes, swallow a message, duplicate updates) instead
of sleeping and hoping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request
from websockets.http11 import Response as HttpResponse

VALID_TOKEN = "good-token"
FORBIDDEN_TOKEN = "other-tenant-token"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}

# Longest any one test may take: a hang fails fast instead of stalling the suite.
TEST_DEADLINE_SECONDS = 10.0


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run one async test body on a fresh event loop, failing it after the deadline."""

    async def bounded() -> Any:
        async with asyncio.timeout(TEST_DEADLINE_SECONDS):
            return await coroutine

    return asyncio.run(bounded())


@dataclass
class FakeRequest:
    """An async request as the fake stores it."""

    request_id: str
    action: str
    payload: dict[str, Any]
    owner: ServerConnection
    status: str = "PENDING"
    seq: int = 0
    progress: float = 0.0
    progress_message: str | None = None
    complete: dict[str, Any] | None = None
    subscribers: set[ServerConnection] = field(default_factory=set)
    created_at: int = field(default_factory=lambda: int(time.time() * 1000))
    updated_at: int = field(default_factory=lambda: int(time.time() * 1000))
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False

    def snapshot(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "request_id": self.request_id,
            "action": self.action,
            "status": self.status,
            "progress": self.progress,
            "progress_message": self.progress_message,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.complete is not None:
            for key in ("result", "error"):
                if key in self.complete:
                    data[key] = self.complete[key]
        return data


class PageGate:
    """A `before_page` hook: holds every report before `page` until the test opens it."""

    def __init__(self, page: int) -> None:
        self.page = page
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()

    async def __call__(self, request: FakeRequest, page: int) -> None:
        if page == self.page:
            self.reached.set()
            await self.opened.wait()


class FakeStreamer:
    """`async with FakeStreamer() as server:` serves on `server.url` until the block ends.

    Test hooks (all optional):
    - `handshake_gate`: awaited before each handshake is answered.
    - `refuse_status`: answer every handshake with this HTTP status.
    - `on_message(connection, message)`: return True to swallow the message.
    - `before_page(request, page)`: awaited before each page of a report.
    - `after_update(request, message)`: awaited after each progress/complete went out.
    - `duplicate_updates`: send every update twice, then the previous one again.
    """

    def __init__(self) -> None:
        self.requests: dict[str, FakeRequest] = {}
        self.received: list[dict[str, Any]] = []
        self.runs: Counter[str] = Counter()
        self.handshakes = 0
        self.handshake_attempts = 0
        self.offered_extensions: list[str | None] = []
        self.connections: set[ServerConnection] = set()
        self.handshake_gate: Callable[[], Awaitable[None]] | None = None
        self.refuse_status: int | None = None
        self.on_message: Callable[[ServerConnection, dict[str, Any]], Awaitable[bool]] | None = None
        self.before_page: Callable[[FakeRequest, int], Awaitable[None]] | None = None
        self.after_update: Callable[[FakeRequest, dict[str, Any]], Awaitable[None]] | None = None
        self.duplicate_updates = False
        self.sync_gate = asyncio.Event()
        self.sync_runs: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._changed = asyncio.Condition()
        self._server: Server | None = None

    async def __aenter__(self) -> FakeStreamer:
        self._server = await serve(
            self._serve_connection,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            compression=None,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for request in self.requests.values():
            if request.task is not None:
                request.task.cancel()
        for run in self.sync_runs.values():
            run.cancel()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/"

    def received_actions(self, action: str) -> list[dict[str, Any]]:
        """Every client message with this action, in arrival order."""
        return [message for message in self.received if message.get("action") == action]

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds; re-checked whenever the server's state changes."""
        async with self._changed:
            await self._changed.wait_for(condition)

    def drop_connections(self) -> None:
        """Cut every connection at the TCP level, with no close frame, as a network failure does."""
        for connection in list(self.connections):
            connection.transport.abort()

    async def cancel_request(self, request_id: str) -> None:
        """Cancel a running request from the server's side."""
        request = self.requests[request_id]
        if request.status not in TERMINAL:
            await self._cancel(request)

    async def _changed_now(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> HttpResponse | None:
        self.handshake_attempts += 1
        self.offered_extensions.append(request.headers.get("Sec-WebSocket-Extensions"))
        if self.handshake_gate is not None:
            await self.handshake_gate()
        if self.refuse_status is not None:
            return connection.respond(self.refuse_status, "unavailable\n")
        token = parse_qs(urlsplit(request.path).query).get("token", [None])[0]
        if token == FORBIDDEN_TOKEN:
            return connection.respond(HTTPStatus.FORBIDDEN, "Forbidden\n")
        if token != VALID_TOKEN:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        self.handshakes += 1
        await self._changed_now()
        return None

    async def _serve_connection(self, connection: ServerConnection) -> None:
        self.connections.add(connection)
        try:
            async for raw in connection:
                try:
                    message = json.loads(raw)
                except ValueError:
                    await self._error(connection, None, "INVALID_MESSAGE", "not JSON")
                    continue
                if not isinstance(message, dict):
                    await self._error(connection, None, "INVALID_MESSAGE", "not an object")
                    continue
                self.received.append(message)
                await self._changed_now()
                if self.on_message is not None and await self.on_message(connection, message):
                    continue
                await self._handle(connection, message)
        except ConnectionClosed:
            pass
        finally:
            self.connections.discard(connection)
            for request in self.requests.values():
                request.subscribers.discard(connection)

    async def _handle(self, connection: ServerConnection, message: dict[str, Any]) -> None:
        action = message.get("action")
        message_id = message.get("id")
        if action == "ping":
            await _send(connection, {"type": "pong"})
            return
        if action in ("status", "subscribe", "unsubscribe", "cancel"):
            await self._system(connection, action, message_id, message.get("request_id"))
            return
        payload = message.get("payload", {})
        if action == "echo":
            await self._echo(connection, message_id, payload)
        elif action == "fail_sync":
            error = {"code": "TIMEOUT", "message": "handler ran past its deadline"}
            await _send(
                connection,
                {"type": "response", "request_id": message_id, "success": False, "error": error},
            )
        elif action == "slow_echo":
            await self._slow_echo(connection, message_id, payload)
        elif action == "generate_report":
            await self._generate_report(connection, message_id, payload)
        else:
            await self._error(connection, message_id, "INVALID_ACTION", f"no handler for {action}")

    async def _system(
        self, connection: ServerConnection, action: str, message_id: Any, request_id: Any
    ) -> None:
        request = self.requests.get(request_id) if isinstance(request_id, str) else None
        if action == "unsubscribe":
            if request is not None:
                request.subscribers.discard(connection)
            await _send(connection, {"type": "unsubscribed", "request_id": request_id})
            return
        if request is None:
            await self._error(connection, message_id, "NOT_FOUND", "unknown request id")
            return
        if action == "status":
            await _send(connection, {"type": "status", "request": request.snapshot()})
        elif action == "subscribe":
            request.subscribers.add(connection)
            await _send(connection, request.complete or self._progress_snapshot(request))
        else:
            # Like the real router: a running request is flagged and ends when
            # its worker notices; the answer is the request's status now.
            request.cancel_requested = request.status not in TERMINAL
            await _send(connection, {"type": "status", "request": request.snapshot()})

    def _progress_snapshot(self, request: FakeRequest) -> dict[str, Any]:
        # Before any progress this has seq 0, as the real router sends it.
        return {
            "type": "progress",
            "request_id": request.request_id,
            "seq": request.seq,
            "percentage": request.progress,
            "message": request.progress_message or "",
            "timestamp": request.updated_at,
        }

    async def _echo(self, connection: ServerConnection, message_id: Any, payload: Any) -> None:
        response = {"type": "response", "request_id": message_id, "success": True}
        await _send(connection, response | {"data": {"echo": payload}})

    async def _slow_echo(self, connection: ServerConnection, message_id: Any, payload: Any) -> None:
        """A sync action held by `sync_gate`; a repeat meanwhile gets CONFLICT, as on the router."""
        stored = self.sync_runs.get(message_id)
        if stored is not None:
            if not stored.done():
                error = {"code": "CONFLICT", "message": "still running", "retryable": True}
                await _send(connection, {"type": "error", "request_id": message_id, "error": error})
            else:
                await _send(connection, stored.result())
            return

        async def run() -> dict[str, Any]:
            await self.sync_gate.wait()
            response = {"type": "response", "request_id": message_id, "success": True}
            response["data"] = {"echo": payload}
            await _send(connection, response)
            return response

        self.sync_runs[message_id] = asyncio.create_task(run())

    async def _generate_report(
        self, connection: ServerConnection, message_id: Any, payload: Any
    ) -> None:
        pages = payload.get("pages") if isinstance(payload, dict) else None
        if not isinstance(pages, int) or isinstance(pages, bool) or not 1 <= pages <= 1000:
            await self._error(
                connection,
                message_id,
                "VALIDATION_ERROR",
                "pages must be an integer from 1 to 1000",
                {"fields": ["pages"]},
            )
            return
        existing = self.requests.get(message_id)
        if existing is not None:
            if (existing.action, existing.payload) != ("generate_report", payload):
                await self._error(connection, message_id, "CONFLICT", "id reused")
                return
            if connection is not existing.owner:
                # Like the real router: a repeat from a new connection follows the run too.
                existing.subscribers.add(connection)
            await self._acknowledge(connection, existing)
            return
        request = FakeRequest(message_id, "generate_report", payload, connection)
        self.requests[message_id] = request
        await self._acknowledge(connection, request)
        request.task = asyncio.create_task(self._run_report(request))

    async def _acknowledge(self, connection: ServerConnection, request: FakeRequest) -> None:
        ack = {"type": "acknowledgment", "request_id": request.request_id, "status": "QUEUED"}
        ack["estimated_duration_ms"] = 30000
        await _send(connection, ack)

    async def _run_report(self, request: FakeRequest) -> None:
        self.runs[request.request_id] += 1
        pages = request.payload["pages"]
        page_ms = request.payload.get("page_ms", 100)
        fail_at = request.payload.get("fail_at_page")
        request.status = "PROCESSING"
        for page in range(1, pages + 1):
            if self.before_page is not None:
                await self.before_page(request, page)
            if request.cancel_requested:
                await self._cancel(request)
                return
            # The demo handler's work, not a wait for readiness.
            await asyncio.sleep(page_ms / 1000)
            if page == fail_at:
                error = {
                    "code": "PROCESSING_FAILED",
                    "message": f"failed at page {page}",
                    "retryable": False,
                }
                await self._finish(request, "FAILED", {"error": error})
                return
            request.progress = 100 * page / pages
            request.progress_message = f"page {page} of {pages}"
            update = {
                "type": "progress",
                "request_id": request.request_id,
                "percentage": request.progress,
                "message": request.progress_message,
                "metadata": {"page": page},
            }
            await self._update(request, update)
        result = {"pages": pages, "report_id": f"rep-{request.request_id}"}
        await self._finish(request, "COMPLETED", {"result": result})

    async def _cancel(self, request: FakeRequest) -> None:
        if request.task is not None and request.task is not asyncio.current_task():
            request.task.cancel()
        error = {"code": "CANCELLED", "message": "the request was cancelled", "retryable": False}
        await self._finish(request, "CANCELLED", {"error": error})

    async def _finish(self, request: FakeRequest, status: str, outcome: dict[str, Any]) -> None:
        request.status = status
        await self._update(
            request,
            {"type": "complete", "request_id": request.request_id, "status": status} | outcome,
        )

    async def _update(self, request: FakeRequest, update: dict[str, Any]) -> None:
        request.seq += 1
        request.updated_at = int(time.time() * 1000)
        message = update | {"seq": request.seq, "timestamp": request.updated_at}
        if message["type"] == "complete":
            request.complete = message
        copies = [message, message] if self.duplicate_updates else [message]
        if self.duplicate_updates and message["seq"] > 1:
            copies.append(message | {"seq": message["seq"] - 1})
        for connection in {request.owner, *request.subscribers}:
            for copy in copies:
                await _send(connection, copy)
        await self._changed_now()
        if self.after_update is not None:
            await self.after_update(request, message)

    async def _error(
        self,
        connection: ServerConnection,
        message_id: Any,
        code: str,
        text: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        error: dict[str, Any] = {"code": code, "message": text, "retryable": False}
        if details is not None:
            error["details"] = details
        message: dict[str, Any] = {"type": "error", "error": error}
        if isinstance(message_id, str):
            message["request_id"] = message_id
        await _send(connection, message)


async def _send(connection: ServerConnection, message: dict[str, Any]) -> None:
    # Like the management API's 410: a gone connection just misses the message.
    with contextlib.suppress(ConnectionClosed):
        await connection.send(json.dumps(message))
