"""The `@connections` management API over HTTP, with API Gateway's status codes.

`handle` decides every answer from plain data; `HttpServer` only moves bytes.
boto3's `apigatewaymanagementapi` client reaches it with nothing but
`endpoint_url`: it maps errors by the `x-amzn-ErrorType` header, so
`GoneException` is raised exactly as on AWS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import unquote

log = logging.getLogger("local.management")

#: API Gateway's limit for PostToConnection data, the same as for a frame.
MAX_POST_BYTES = 128 * 1024
#: Seconds a kept-alive connection may stay idle before the server closes it.
IDLE_TIMEOUT_S = 30

# On AWS the path carries the stage (`/prod/@connections/{id}`); locally the
# endpoint has none, and both forms are accepted.
_CONNECTION_PATH = re.compile(r"^(?:/[^/@]+)?/@connections/([^/]+)$")


class Connections(Protocol):
    """What the management API does to live connections (the gateway, seen from a thread)."""

    def post(self, connection_id: str, data: bytes) -> bool: ...

    def describe(self, connection_id: str) -> dict | None: ...

    def delete(self, connection_id: str) -> bool: ...


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


#: Answers a request before the management API does (fault injection); None lets it through.
Intercept = Callable[[str, str, bytes], HttpResponse | None]
#: Answers a request the management API did not (method, target, headers, body); None: not its.
Api = Callable[[str, str, dict[str, str], bytes], HttpResponse | None]


def error_response(status: int, error_type: str, message: str) -> HttpResponse:
    """An error as API Gateway answers it: JSON message, type in `x-amzn-ErrorType`."""
    return HttpResponse(
        status,
        json.dumps({"message": message}).encode(),
        {"Content-Type": "application/json", "x-amzn-ErrorType": error_type},
    )


GONE = error_response(410, "GoneException", "The connection is gone")
TOO_LARGE = error_response(413, "PayloadTooLargeException", "Message too long")
FORBIDDEN = error_response(403, "ForbiddenException", "Forbidden")


def connection_of(path: str) -> str | None:
    """The connection id of an `@connections/{id}` path; None for any other path."""
    match = _CONNECTION_PATH.match(path.split("?", 1)[0])
    return unquote(match.group(1)) if match else None


def handle(method: str, path: str, body: bytes, connections: Connections) -> HttpResponse | None:
    """Answer one `@connections` request; None when the path is not the management API's."""
    connection_id = connection_of(path)
    if connection_id is None:
        return None
    if method == "POST":
        if len(body) > MAX_POST_BYTES:
            return TOO_LARGE
        return HttpResponse(200) if connections.post(connection_id, body) else GONE
    if method == "GET":
        description = connections.describe(connection_id)
        if description is None:
            return GONE
        return HttpResponse(
            200, json.dumps(description).encode(), {"Content-Type": "application/json"}
        )
    if method == "DELETE":
        return HttpResponse(204) if connections.delete(connection_id) else GONE
    return FORBIDDEN


class GatewayConnections:
    """`Connections` for threads: each call runs the gateway's coroutine on its loop."""

    def __init__(self, gateway, loop: asyncio.AbstractEventLoop, timeout_s: float = 30) -> None:
        self._gateway = gateway
        self._loop = loop
        self._timeout_s = timeout_s

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(self._timeout_s)

    def post(self, connection_id: str, data: bytes) -> bool:
        return self._call(self._gateway.post(connection_id, data))

    def describe(self, connection_id: str) -> dict | None:
        return self._call(self._gateway.describe(connection_id))

    def delete(self, connection_id: str) -> bool:
        return self._call(self._gateway.delete(connection_id))


class _RequestHandler(BaseHTTPRequestHandler):
    """One client connection, kept open across requests: HTTP/1.1's persistent connections
    (RFC 9112, section 9.3), which botocore relies on to reuse the pooled connection of a
    client for its next call ("max_pool_connections": "The maximum number of connections
    to keep in a connection pool", https://docs.aws.amazon.com/botocore/latest/reference/config.html).
    Closing it after each request made every post open a TCP connection, and the stack
    start a thread for it: about twice the CPU of a post (client and server).
    """

    server: _Server
    protocol_version = "HTTP/1.1"
    #: An idle connection is closed after this many seconds, and its thread ends.
    timeout = IDLE_TIMEOUT_S
    # An answer is written as headers, then body: on a kept connection, Nagle's algorithm
    # would hold the body back until the client acknowledged the headers, which it delays.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, open_=False)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        intercept = self.server.intercept
        response = intercept(self.command, self.path, body) if intercept else None
        if response is None:
            response = handle(self.command, self.path, body, self.server.connections)
        if response is None and self.server.api is not None:
            response = self.server.api(self.command, self.path, dict(self.headers.items()), body)
        if response is None:
            response = self.server.fallback(self.command, self.path)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body and self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = _answer

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    # Connection threads are joined on close, so none is left behind; the
    # connections still open then (idle keep-alive ones) are shut down first
    # (`close_connections`), so no thread waits out its idle timeout.
    daemon_threads = False
    block_on_close = True
    # socketserver's listen backlog is 5: under a burst, the processors' posts past it
    # were dropped by the kernel and failed with ConnectTimeoutError, a `complete` lost
    # where API Gateway would have taken it. Connections now wait for the accepting thread.
    request_queue_size = 1024
    connections: Connections
    fallback: Callable[[str, str], HttpResponse]
    intercept: Intercept | None
    api: Api | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._open_lock:
            if open_:
                self._open.add(connection)
            else:
                self._open.discard(connection)

    def close_connections(self) -> None:
        """End every open connection's reading side: an idle one's thread reads the end of
        it and returns; one answering a request writes its answer first."""
        with self._open_lock:
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RD)


class HttpServer:
    """The stack's HTTP port: `@connections/{id}`, and `fallback` for every other path.

    `intercept`, when given, sees every request first (method, path, body);
    `api` (the HTTP API) every request the management API does not answer.
    """

    def __init__(
        self,
        host: str,
        port: int,
        fallback: Callable[[str, str], HttpResponse],
        intercept: Intercept | None = None,
        api: Api | None = None,
    ) -> None:
        self._server = _Server((host, port), _RequestHandler, bind_and_activate=True)
        self._server.fallback = fallback
        self._server.intercept = intercept
        self._server.api = api
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self, connections: Connections) -> None:
        self._server.connections = connections
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-http", kwargs={"poll_interval": 0.2}
        )
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.close_connections()
        self._server.server_close()
