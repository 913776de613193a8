"""The WebSocket side of API Gateway: handshake through the authorizer, routes, limits.

A connection lives here from the moment `$connect` accepts it until its socket
closes; `post`, `describe` and `delete` are what the `@connections` API does
to it. They run on the event loop; the management server calls them from its
threads through `asyncio.run_coroutine_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event, State

from local import apigateway
from local.apigateway import Api, Handshake
from local.functions import EncodedEvent, FunctionError, LambdaFunction

log = logging.getLogger("local.gateway")

GOING_AWAY = 1001
#: "API Gateway WebSocket APIs don't currently support binary frames in incoming message
#: payloads. If a client app sends a binary frame, API Gateway rejects it and disconnects
#: the client with code 1003" (developer guide, "Binary media types for WebSocket APIs").
UNSUPPORTED_DATA = 1003
NORMAL_CLOSURE = 1000


@dataclass(frozen=True)
class Limits:
    """API Gateway's WebSocket quotas; shorter ones make the timeouts testable."""

    max_message_bytes: int = 128 * 1024
    idle_timeout_s: float = 10 * 60
    max_duration_s: float = 2 * 3600


@dataclass(frozen=True)
class Integrations:
    """The Lambda functions behind the API: authorizer, `$connect`, `$disconnect`, routes."""

    authorizer: LambdaFunction
    connect: LambdaFunction
    disconnect: LambdaFunction
    routes: dict[str, LambdaFunction]


@dataclass
class Session:
    """A connection `$connect` accepted: what the gateway and `GET @connections` know of it."""

    handshake: Handshake
    authorizer: dict | None
    socket: ServerConnection
    #: Its message events, written from its parts of them encoded once.
    events: apigateway.MessageEvents
    opened_at: float = field(default_factory=time.time)
    last_active_at: float = field(default_factory=time.time)
    #: Closing for a binary frame: nothing more is routed.
    refused: bool = False

    def touch(self) -> None:
        self.last_active_at = time.time()


def _iso8601(epoch_s: float) -> str:
    millis = int(epoch_s * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s)) + f".{millis:03d}Z"


class Gateway:
    """Serves one WebSocket API: bind first, then `start` with the integrations."""

    def __init__(self, api: Api, limits: Limits) -> None:
        self.api = api
        self.limits = limits
        self._integrations: Integrations | None = None
        self._server: Server | None = None
        self._accepted: dict[ServerConnection, tuple[Handshake, dict | None]] = {}
        self._handshake_headers: dict[ServerConnection, dict[str, str]] = {}
        self._sessions: dict[str, Session] = {}
        #: What a routed frame still waits for: its invocation, or a route response's send.
        self._routing: set[asyncio.Future] = set()

    async def bind(self, host: str, port: int) -> int:
        """Listen on `host:port` (0 picks a free port) without serving yet; returns the port.

        Binding before anything slow starts lets a taken port fail at once.
        """
        self._server = await serve(
            self._serve_connection,
            host,
            port,
            process_request=self._open,
            process_response=self._answer,
            compression=None,
            max_size=self.limits.max_message_bytes,
            # API Gateway sends no keepalive pings of its own; it answers the client's.
            ping_interval=None,
            close_timeout=2,
            start_serving=False,
            create_connection=_Connection,
        )
        return self._server.sockets[0].getsockname()[1]

    async def start(self, integrations: Integrations) -> None:
        assert self._server is not None, "bind() first"
        self._integrations = integrations
        await self._server.start_serving()

    async def close(self) -> None:
        """Close every connection with 1001, run their `$disconnect`, finish routed messages."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        while self._routing:
            await asyncio.gather(*self._routing, return_exceptions=True)
            # Each leaves the set as it ends; one that did not is not waited for again.
            self._routing = {future for future in self._routing if not future.done()}

    # -- handshake -------------------------------------------------------------

    async def _open(self, socket: ServerConnection, request: Request) -> Response | None:
        assert self._integrations is not None
        handshake = Handshake(
            connection_id=apigateway.new_id(),
            path=request.path,
            headers=tuple(request.headers.raw_items()),
            source_ip=socket.remote_address[0],
            domain_name=request.headers.get("Host", ""),
        )
        if not apigateway.identity_present(handshake, self.api.identity_sources):
            return _refusal(socket, apigateway.UNAUTHORIZED.status)
        started = time.monotonic()
        try:
            answer = await self._integrations.authorizer.invoke_async(
                apigateway.authorizer_event(self.api, handshake)
            )
        except FunctionError as error:
            authorization = apigateway.authorization_from_error(error.error_message)
        else:
            latency_ms = int((time.monotonic() - started) * 1000)
            authorization = apigateway.authorization_from_policy(
                answer, self.api.method_arn(apigateway.CONNECT_ROUTE), latency_ms
            )
        if not authorization.allowed:
            return _refusal(socket, authorization.status)
        try:
            answer = await self._integrations.connect.invoke_async(
                apigateway.connect_event(self.api, handshake, authorization.authorizer)
            )
            status = apigateway.integration_status(answer)
        except FunctionError:
            status = 502
        if not 200 <= status < 300:
            return _refusal(socket, status)
        self._accepted[socket] = (handshake, authorization.authorizer)
        self._handshake_headers[socket] = apigateway.handshake_headers(answer)
        return None

    def _answer(self, socket: ServerConnection, request: Request, response: Response) -> None:
        """Put what `$connect` answered (its subprotocol) into the handshake response."""
        for name, value in self._handshake_headers.pop(socket, {}).items():
            response.headers[name] = value

    # -- an open connection ----------------------------------------------------

    async def _serve_connection(self, socket: _Connection) -> None:
        handshake, authorizer = self._accepted.pop(socket)
        events = apigateway.MessageEvents(self.api, handshake, authorizer)
        session = Session(handshake, authorizer, socket, events)
        connection_id = handshake.connection_id
        self._sessions[connection_id] = session
        watchdog = asyncio.create_task(self._enforce_timeouts(session))
        log.info("connected %s from %s", connection_id, handshake.source_ip)
        try:
            # Whole frames come to `_frame` as the connection parses them; this reads
            # only what websockets joins from fragments.
            socket.on_message = functools.partial(self._frame, session)
            async for message in socket:
                self._frame(session, message)
        except ConnectionClosed:
            pass
        finally:
            watchdog.cancel()
            self._sessions.pop(connection_id, None)
        await self._disconnected(session)

    def _frame(self, session: Session, message: str | bytes) -> None:
        """A message from the client: its route's invocation begins (`_Connection`); a
        binary one closes the connection, and nothing after it is routed."""
        if session.refused:
            return
        if isinstance(message, bytes):
            session.refused = True
            self._routing.add(asyncio.ensure_future(self._refuse(session)))
            return
        session.touch()
        try:
            invocation = self._invoke(session, message)
        except Exception:
            # A bug here, never a silent drop; the connection reads on.
            log.exception("routing a frame failed")
            return
        self._routing.add(invocation)

    async def _refuse(self, session: Session) -> None:
        try:
            await session.socket.close(UNSUPPORTED_DATA)
        finally:
            self._routing.discard(asyncio.current_task())  # type: ignore[arg-type]

    def _invoke(self, session: Session, message: str) -> asyncio.Future:
        """The frame's route's invocation, already started, answered by `_answered`.

        Started here, in the turn of the loop that read the frame: the function runs
        while the loop reads on.
        """
        assert self._integrations is not None
        routes = self._integrations.routes
        route_key = apigateway.select_route(message, routes.keys())
        request_id, event = session.events.encode(route_key, message)
        on_end = functools.partial(self._answered, session, request_id)
        return routes[route_key].begin(EncodedEvent(event), on_end)

    def _answered(self, session: Session, request_id: str, invocation: asyncio.Future) -> None:
        """The invocation ended: send its route response, if any, at once.

        Called by the function as the invocation ends, not a task per frame that awaits
        it: a task costs the loop its creation and two more turns a frame (its first
        step, and its wake-up when the invocation ends). A failure of the gateway's own
        is logged, never a silent drop.
        """
        self._routing.discard(invocation)
        if invocation.cancelled():
            return
        try:
            reply = self._route_response(session, request_id, invocation)
            if reply is not None:
                self._respond(session, reply)
        except Exception:
            log.exception("routing a frame failed")

    @staticmethod
    def _route_response(
        session: Session, request_id: str, invocation: asyncio.Future
    ) -> str | None:
        """What API Gateway sends back for the invocation (its event's `request_id`): its
        route response, or its integration failure."""
        try:
            return apigateway.route_response(invocation.result())
        except FunctionError:
            return apigateway.integration_failure(session.handshake, request_id)

    def _respond(self, session: Session, reply: str) -> None:
        """Send the route response now, or, when the socket cannot take it now, from a task.

        Route responses to different frames are not ordered among themselves: each is
        sent when its own invocation ends. API Gateway's guide promises no order
        between them either (each frame is its own integration request).
        """
        if _send_now(session.socket, reply):
            session.touch()
            return
        self._routing.add(asyncio.ensure_future(self._respond_later(session, reply)))

    async def _respond_later(self, session: Session, reply: str) -> None:
        try:
            await session.socket.send(reply)
            session.touch()
        except ConnectionClosed:
            log.info("route response for gone %s dropped", session.handshake.connection_id)
        except Exception:
            log.exception("routing a frame failed")
        finally:
            self._routing.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _enforce_timeouts(self, session: Session) -> None:
        while True:
            idle_at = session.last_active_at + self.limits.idle_timeout_s
            expires_at = session.opened_at + self.limits.max_duration_s
            wait = min(idle_at, expires_at) - time.time()
            if wait <= 0:
                log.info("closing %s: idle or too old", session.handshake.connection_id)
                await session.socket.close(GOING_AWAY, "Going away")
                return
            await asyncio.sleep(wait)

    async def _disconnected(self, session: Session) -> None:
        assert self._integrations is not None
        protocol = session.socket.protocol
        code, reason = apigateway.disconnect_status(
            (protocol.close_rcvd.code, protocol.close_rcvd.reason) if protocol.close_rcvd else None,
            (protocol.close_sent.code, protocol.close_sent.reason) if protocol.close_sent else None,
            protocol.close_rcvd_then_sent,
        )
        log.info("disconnected %s: %s %s", session.handshake.connection_id, code, reason)
        event = apigateway.disconnect_event(
            self.api, session.handshake, session.authorizer, code, reason
        )
        # On AWS too, $disconnect is best effort: the connection is gone either way.
        with contextlib.suppress(FunctionError):
            await self._integrations.disconnect.invoke_async(event)

    # -- the @connections API ----------------------------------------------------

    async def post(self, connection_id: str, data: bytes) -> bool:
        """Send `data` to a connection; False when it is unknown or closed (410 Gone)."""
        session = self._sessions.get(connection_id)
        if session is None:
            return False
        try:
            frame: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            frame = data
        try:
            await session.socket.send(frame)
        except ConnectionClosed:
            return False
        session.touch()
        return True

    async def describe(self, connection_id: str) -> dict | None:
        """`GET @connections/{id}`'s answer, or None when the connection is gone."""
        session = self._sessions.get(connection_id)
        if session is None:
            return None
        return {
            "connectedAt": _iso8601(session.handshake.connected_at / 1000),
            "identity": session.handshake.identity,
            "lastActiveAt": _iso8601(session.last_active_at),
        }

    async def delete(self, connection_id: str) -> bool:
        """Close a connection from the server side; False when it is already gone."""
        session = self._sessions.pop(connection_id, None)
        if session is None:
            return False
        await session.socket.close(NORMAL_CLOSURE)
        return True


class _Connection(ServerConnection):
    """A connection whose whole data frames go to `on_message` as they are parsed.

    Once the gateway sets `on_message`, a frame that is a whole message (text that is
    UTF-8, or binary) is handed over in the turn of the loop that read it, rather than
    queued for a task that reads the connection: that task would wake one turn later,
    a loop turn and a task switch more a frame. Everything else takes websockets' own
    path, unchanged: fragments (its assembler joins them, and the reading task hands
    the message over), control frames, and a text frame that is not UTF-8 (which
    websockets refuses, closing with 1007, and after which nothing more is handed over
    here). A fragmented message may so be handed over after a whole one read later;
    API Gateway's guide promises no order between the invocations of a connection's
    frames either.

    Relies on `process_event` (websockets 15 to 17, as requirements.txt pins; the
    gateway tests fail if it changes).
    """

    on_message: Callable[[str | bytes], None] | None = None

    def process_event(self, event: Event) -> None:
        on_message = self.on_message
        if on_message is None or type(event) is not Frame or not event.fin:
            super().process_event(event)
            return
        if event.opcode is Opcode.TEXT:
            try:
                message: str | bytes = bytes(event.data).decode()
            except UnicodeDecodeError:
                # websockets fails the connection when its reader gets this frame; no
                # frame after it is handed over meanwhile, as `recv` would not either.
                self.on_message = None
                super().process_event(event)
                return
        elif event.opcode is Opcode.BINARY:
            message = bytes(event.data)
        else:
            super().process_event(event)
            return
        on_message(message)


def _send_now(socket: ServerConnection, text: str) -> bool:
    """Send a text frame without a coroutine when the connection can take it now: what
    `socket.send` does when it would not wait (open, its transport not closing, not
    paused by flow control), through the same Sans-I/O protocol and transport. False,
    having sent nothing, when it would wait: then `socket.send` must.

    Relies on `websockets.asyncio.connection.Connection`'s `protocol`, `transport`,
    `paused` and `send_data` (websockets 15 to 17, as requirements.txt pins; the gateway
    tests fail if they change). The gateway sends no fragmented messages, which `send`
    would also wait for.
    """
    if socket.protocol.state is not State.OPEN or socket.paused or socket.transport.is_closing():
        return False
    socket.protocol.send_text(text.encode())
    socket.send_data()
    return True


def _refusal(socket: ServerConnection, status: int) -> Response:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    return socket.respond(status, reason + "\n")
