"""The asyncio client: the I/O around the conversation (`client.conversation`).

`StreamerClient` owns sockets, timers and the token provider; every decision
(what to send, what an answer means, when to resend, reconnect, rotate or
ping) is the sans-I/O `Conversation`'s, specified in
client/conversation/README.md and pinned by the vectors both clients run.
The client feeds it what happened (a call, a message, a connection opened or
lost, the clock) and carries out the I/O it asks for, in order.

Connection states (the `on()` events): `connecting`, `connected`,
`disconnected` (retrying with jittered backoff), `suspended` (retrying about
every 30 s after a long outage), `closed`, `failed` (given up: a refused
handshake that a new token cannot fix, a token provider that keeps failing, or
a reconnect limit). Reconnecting never gives up by default.

Tokens: a fixed token, or a provider (a function, sync or async, returning a
JWT) called before every connect. A 401 on a reconnect fetches a new token;
the connection is replaced (new one first, resumed, then the old one closed)
before the token's `exp` and before API Gateway's 2-hour maximum connection
duration, so a client lives for days without losing an update.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from client.conversation import (
    STATES,
    Close,
    Conversation,
    Failed,
    FetchToken,
    NotificationEvent,
    Ok,
    Open,
    Options,
    Output,
    ProgressEvent,
    Send,
    StateChanged,
    TopicNotification,
)
from client.messages import Completion, Notification, Progress, RequestSnapshot
from client.reconnect import ReconnectPolicy

logger = logging.getLogger("client")

ProgressCallback = Callable[[Progress], Awaitable[None] | None]
"""Called with each new `Progress` of a request, in `seq` order; may be async."""

NotificationCallback = Callable[[Notification], Awaitable[None] | None]
"""Called with each new notification of a topic (or, for `notification`, any)."""

TokenProvider = Callable[[], Awaitable[str] | str]
"""Returns a fresh JWT; called before every connect. May be async."""

# The conversation's defaults (client/conversation/README.md), in seconds.
_DEFAULTS = Options()
DEFAULT_HEARTBEAT_SECONDS = (_DEFAULTS.ping_interval_ms or 0) / 1000
DEFAULT_RATE_LIMIT_RETRIES = _DEFAULTS.rate_limit_retries
DEFAULT_UNAVAILABLE_DEADLINE_SECONDS = _DEFAULTS.unavailable_deadline_ms / 1000
DEFAULT_ANSWER_TIMEOUT_SECONDS = (_DEFAULTS.answer_timeout_ms or 0) / 1000

# What `on()` takes: every state the client can enter, any state change, notifications.
EVENTS = ("statechange", *(state for state in STATES if state != "idle"), "notification")


class StreamerClient:
    """A connection to Streamer that runs requests, follows topics and survives drops.

    Use it as an async context manager::

        async with StreamerClient("ws://127.0.0.1:8080/", token) as client:
            result = await client.call("generate_report", {"pages": 5}, on_progress=print)

    `token` is a JWT or a `TokenProvider`. Many calls may run at once. After
    a drop the client reconnects by `reconnect` and resumes every request,
    call and topic still followed, so an awaiting `call` still returns. A
    `ping` goes out after `heartbeat_interval` seconds without sending (None:
    never); silence for `pong_timeout` seconds after it means the connection
    is dead and is replaced. A message the rate limit refused is sent again
    after the server's wait plus jitter, up to `rate_limit_retries` times in
    a row; one answered `UNAVAILABLE`, for up to `unavailable_deadline_s`
    seconds. A message unanswered for `answer_timeout_s` seconds (None: wait
    forever) ends its caller's wait with `NoAnswer`. The connection is
    replaced `rotate_before_s` before `max_connection_s` (API Gateway's 2 h)
    or the token's `exp`. `clock` (seconds since the epoch) is for tests.
    Errors are `client.errors.StreamerError` subclasses carrying the code.
    """

    def __init__(
        self,
        url: str,
        token: str | TokenProvider,
        *,
        reconnect: ReconnectPolicy | None = None,
        heartbeat_interval: float | None = DEFAULT_HEARTBEAT_SECONDS,
        pong_timeout: float = _DEFAULTS.pong_timeout_ms / 1000,
        open_timeout: float = 10.0,
        rng: random.Random | None = None,
        rate_limit_retries: int = DEFAULT_RATE_LIMIT_RETRIES,
        unavailable_deadline_s: float = DEFAULT_UNAVAILABLE_DEADLINE_SECONDS,
        answer_timeout_s: float | None = DEFAULT_ANSWER_TIMEOUT_SECONDS,
        max_connection_s: float = _DEFAULTS.max_connection_ms / 1000,
        rotate_before_s: float = _DEFAULTS.rotate_before_ms / 1000,
        max_token_failures: int = _DEFAULTS.max_token_failures,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive or None")
        if answer_timeout_s is not None and answer_timeout_s <= 0:
            raise ValueError("answer_timeout_s must be positive or None")
        policy = reconnect or ReconnectPolicy()
        self._options = Options(
            token=token if isinstance(token, str) else None,
            answer_timeout_ms=None if answer_timeout_s is None else _ms(answer_timeout_s),
            rate_limit_retries=rate_limit_retries,
            unavailable_deadline_ms=_ms(unavailable_deadline_s),
            initial_delay_ms=_ms(policy.initial_delay),
            max_delay_ms=_ms(policy.max_delay),
            multiplier=policy.multiplier,
            suspend_after_ms=_ms(policy.suspend_after),
            suspended_retry_ms=_ms(policy.suspended_retry),
            max_reconnect_attempts=policy.max_attempts,
            max_token_failures=max_token_failures,
            ping_interval_ms=None if heartbeat_interval is None else _ms(heartbeat_interval),
            pong_timeout_ms=_ms(pong_timeout),
            max_connection_ms=_ms(max_connection_s),
            rotate_before_ms=_ms(rotate_before_s),
        )
        self._url = url
        self._provider = None if isinstance(token, str) else token
        self._open_timeout = open_timeout
        self._clock = clock
        self._rng = rng or random.Random()
        self._machine = Conversation(
            self._options,
            now_ms=self._now(),
            new_id=_new_id,
            # Through `uniform`, so a `random.Random` subclass that picks its jitter is obeyed.
            random=lambda: self._rng.uniform(0.0, 1.0),
        )
        self._handles = itertools.count(1)
        self._inboxes: dict[int, asyncio.Queue[ProgressEvent | Ok | Failed]] = {}
        self._topic_callbacks: dict[int, NotificationCallback] = {}
        self._topic_handles: dict[str, list[int]] = {}
        self._listeners: dict[str, list[Callable[[Any], Any]]] = {name: [] for name in EVENTS}
        self._links: dict[int, ClientConnection] = {}
        self._outboxes: dict[int, asyncio.Queue[str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._clock_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def state(self) -> str:
        """`idle` (before connect), `connecting`, `connected`, `disconnected`, `suspended`,
        `closed` or `failed`."""
        return self._machine.state

    def on(self, event: str, callback: Callable[[Any], Any]) -> None:
        """Call `callback` on `event`: a state name or `statechange` (any state; both
        with the `StateChanged`), or `notification` (with every new `Notification`, a
        topic's or the user's). The names are the JS client's too."""
        if event not in self._listeners:
            raise ValueError(f"unknown event {event!r}; one of {', '.join(EVENTS)}")
        self._listeners[event].append(callback)

    def off(self, event: str, callback: Callable[[Any], Any]) -> None:
        """Stop calling `callback` on `event`."""
        with contextlib.suppress(KeyError, ValueError):
            self._listeners[event].remove(callback)

    async def __aenter__(self) -> StreamerClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection.

        Raises `ConnectionRefused` (with `status_code`, e.g. 401 or 403) when
        the server refuses the handshake, `ConnectionFailed` when it cannot be
        reached, `TokenFailed` when the provider keeps failing. The first
        connection is not retried (a wrong URL fails fast), except with a new
        token after a 401.
        """
        handle = next(self._handles)
        inbox = self._inbox(handle)
        self._feed(lambda: self._machine.connect(handle))
        self._clock_task = asyncio.create_task(self._keep_time())
        await self._outcome(handle, inbox, None)

    async def close(self) -> None:
        """Close every connection; anything still awaited raises `ConnectionFailed`."""
        self._feed(self._machine.close)
        links = list(self._links.values())
        self._links.clear()
        for ws in links:
            with contextlib.suppress(Exception):
                await ws.close()
        tasks = [*self._tasks, *([self._clock_task] if self._clock_task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def call(
        self,
        action: str,
        payload: Mapping[str, Any] | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        request_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Any:
        """Run `action` and return its result, sync or async alike.

        A sync action's `response` returns its `data`. An async action is
        acknowledged, reports `Progress` to `on_progress` (in `seq` order, each
        at most once, across reconnects and rotations), and returns the
        `result` of its COMPLETED `complete`. `request_id` (1-128 of
        `[A-Za-z0-9_.:-]`, generated when None) is the idempotency key.

        Raises the typed error of the protocol code: with `request_status`
        FAILED or CANCELLED when the request ran and ended so, None when it
        was refused; `Unavailable` once `unavailable_deadline_s` is over;
        `NoAnswer` after `answer_timeout_s` without an answer; the client's
        failure (`ConnectionRefused`, `ConnectionLost`, `TokenFailed`) when it
        gave up; ValueError for an action or id that breaks the protocol's rules
        and `PayloadTooLarge` over 128 KiB, before anything is sent.
        """
        return await self._request(action, payload, request_id, metadata, on_progress, False)

    async def send(
        self,
        action: str,
        payload: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Any:
        """Run a sync action and return its response `data`.

        Raises `NotSynchronous` (naming the request id) if the server
        acknowledged it instead: the action is async, its request is stored
        and runs, and `subscribe` follows it. Other errors are as for `call`.
        """
        return await self._request(action, payload, request_id, metadata, None, True)

    async def subscribe(self, request_id: str, on_progress: ProgressCallback | None = None) -> Any:
        """Follow an existing request (e.g. from another connection) to its end.

        Returns the result or raises as `call` does (`NotFound` for an unknown id).
        """
        return await self._run(lambda h: self._machine.subscribe(h, request_id), on_progress)

    async def unsubscribe(self, request_id: str) -> None:
        """Stop receiving a request's updates; its awaiting calls raise `SubscriptionEnded`."""
        await self._run(lambda h: self._machine.unsubscribe(h, request_id))

    async def status(self, request_id: str) -> RequestSnapshot:
        """The request's stored state; raises `NotFound` for an unknown id."""
        snapshot: RequestSnapshot = await self._run(lambda h: self._machine.status(h, request_id))
        return snapshot

    async def cancel(self, request_id: str) -> Completion:
        """Cancel a request and return how it ended (CANCELLED, or how it had ended already).

        A running request ends when its worker notices, so this waits for the
        `complete`. Raises `NotFound` for an unknown id.
        """
        completion: Completion = await self._run(lambda h: self._machine.cancel(h, request_id))
        return completion

    async def ping(self) -> float:
        """Send `ping`, await `pong`; returns the round trip in seconds."""
        started = time.monotonic()
        await self._run(self._machine.ping)
        return time.monotonic() - started

    async def subscribe_topic(self, topic: str, on_notification: NotificationCallback) -> None:
        """Follow `topic` (of the caller's tenant); returns once subscribed.

        `on_notification` gets each new `Notification` of the topic, the
        topic's retained one included. The subscription is restored on every
        new connection; a retained notification repeated by that is not
        delivered again. Raises `Forbidden` for a watch token.
        """
        self._started()
        handle = next(self._handles)
        self._topic_callbacks[handle] = on_notification
        self._topic_handles.setdefault(topic, []).append(handle)
        inbox = self._inbox(handle)
        try:
            self._feed(lambda: self._machine.subscribe_topic(handle, topic))
            await self._outcome(handle, inbox, None)
        except BaseException:
            self._forget_topic_handle(topic, handle)
            raise

    async def unsubscribe_topic(self, topic: str) -> None:
        """Stop following `topic`."""
        for handle in self._topic_handles.pop(topic, []):
            self._topic_callbacks.pop(handle, None)
        await self._run(lambda h: self._machine.unsubscribe_topic(h, topic))

    # ----- calls

    def _started(self) -> None:
        if self._machine.state == "idle":
            raise RuntimeError("StreamerClient is not connected: use `async with` or connect()")

    async def _request(
        self,
        action: str,
        payload: Mapping[str, Any] | None,
        request_id: str | None,
        metadata: Mapping[str, str] | None,
        on_progress: ProgressCallback | None,
        sync_only: bool,
    ) -> Any:
        def start(handle: int) -> Output:
            return self._machine.request(
                handle,
                action,
                payload,
                request_id=request_id,
                metadata=metadata,
                sync_only=sync_only,
            )

        return await self._run(start, on_progress)

    async def _run(
        self, start: Callable[[int], Output], on_progress: ProgressCallback | None = None
    ) -> Any:
        self._started()
        handle = next(self._handles)
        inbox = self._inbox(handle)
        try:
            self._feed(lambda: start(handle))
        except BaseException:
            self._inboxes.pop(handle, None)
            raise
        return await self._outcome(handle, inbox, on_progress)

    def _inbox(self, handle: int) -> asyncio.Queue[ProgressEvent | Ok | Failed]:
        inbox: asyncio.Queue[ProgressEvent | Ok | Failed] = asyncio.Queue()
        self._inboxes[handle] = inbox
        return inbox

    async def _outcome(
        self,
        handle: int,
        inbox: asyncio.Queue[ProgressEvent | Ok | Failed],
        on_progress: ProgressCallback | None,
    ) -> Any:
        finished = False
        try:
            while True:
                item = await inbox.get()
                if isinstance(item, ProgressEvent):
                    if on_progress is not None:
                        outcome = on_progress(item.progress)
                        if inspect.isawaitable(outcome):
                            await outcome
                    continue
                finished = True
                if isinstance(item, Failed):
                    raise item.error
                return item.value
        finally:
            self._inboxes.pop(handle, None)
            if not finished and self._machine.state != "closed":
                # The caller stopped waiting (cancelled, timed out): nothing awaits it now.
                self._feed(lambda: self._machine.abandon(handle))

    def _forget_topic_handle(self, topic: str, handle: int) -> None:
        self._topic_callbacks.pop(handle, None)
        handles = self._topic_handles.get(topic, [])
        if handle in handles:
            handles.remove(handle)

    # ----- feeding the conversation and doing what it asks

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _feed(self, step: Callable[[], Output]) -> None:
        """Move the conversation's clock to now, feed it `step`, carry out the outputs."""
        self._apply(self._machine.tick(self._now()))
        self._apply(step())
        self._wake.set()

    def _apply(self, output: Output) -> None:
        for note in output.notes:
            logger.info("%s", note)
        for io in output.io:
            if isinstance(io, Send):
                outbox = self._outboxes.get(io.conn)
                if outbox is not None:
                    outbox.put_nowait(io.text)
            elif isinstance(io, Open):
                self._spawn(self._open(io.conn, io.token))
            elif isinstance(io, Close):
                self._outboxes.pop(io.conn, None)
                ws = self._links.pop(io.conn, None)
                if ws is not None:
                    self._spawn(ws.close())
            elif isinstance(io, FetchToken):
                self._spawn(self._fetch_token())
        for event in output.events:
            self._emit(event)
        for result in output.results:
            inbox = self._inboxes.get(result.handle)  # type: ignore[arg-type]
            if inbox is not None:
                inbox.put_nowait(result)

    def _emit(self, event: Any) -> None:
        if isinstance(event, ProgressEvent):
            inbox = self._inboxes.get(event.handle)  # type: ignore[arg-type]
            if inbox is not None:
                inbox.put_nowait(event)
        elif isinstance(event, StateChanged):
            logger.info("streamer client %s%s", event.state, _retry_note(event))
            self._call_listeners(self._listeners["statechange"], event)
            self._call_listeners(self._listeners[event.state], event)
        elif isinstance(event, NotificationEvent):
            self._call_listeners(self._listeners["notification"], event.notification)
        elif isinstance(event, TopicNotification):
            callback = self._topic_callbacks.get(event.handle)  # type: ignore[arg-type]
            if callback is not None:
                self._call_listeners([callback], event.notification)

    def _call_listeners(self, callbacks: list[Callable[[Any], Any]], value: Any) -> None:
        for callback in list(callbacks):
            try:
                outcome = callback(value)
                if inspect.isawaitable(outcome):
                    self._spawn(_awaited(outcome))
            except Exception:
                logger.exception("a streamer client callback raised")

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch_token(self) -> None:
        assert self._provider is not None
        try:
            token = self._provider()
            if inspect.isawaitable(token):
                token = await token
            if not isinstance(token, str) or not token:
                raise TypeError("the token provider must return a non-empty string")
        except Exception:
            logger.exception("the token provider failed")
            self._feed(self._machine.token_failed)
            return
        self._feed(lambda: self._machine.token(token))

    async def _open(self, conn: int, token: str) -> None:
        try:
            # permessage-deflate costs the gateway ~3x memory per connection.
            ws = await connect(
                _url_with_token(self._url, token),
                compression=None,
                open_timeout=self._open_timeout,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            self._feed(lambda: self._machine.refused(conn, status))
            return
        except (OSError, TimeoutError, WebSocketException) as exc:
            reason = f"{self._url}: {exc}"
            self._feed(lambda: self._machine.unreachable(conn, reason))
            return
        self._links[conn] = ws
        outbox: asyncio.Queue[str] = asyncio.Queue()
        self._outboxes[conn] = outbox
        self._spawn(self._write(ws, outbox))
        self._spawn(self._read(conn, ws))
        self._feed(lambda: self._machine.opened(conn))

    async def _write(self, ws: ClientConnection, outbox: asyncio.Queue[str]) -> None:
        # One writer per connection keeps the conversation's order of sends.
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.send(await outbox.get())

    async def _read(self, conn: int, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                try:
                    self._feed(lambda raw=raw: self._machine.receive(conn, raw))  # type: ignore[misc]
                except Exception:
                    # One bad message must not stop the reader every caller depends on.
                    logger.exception("could not handle a server message")
        self._links.pop(conn, None)
        self._outboxes.pop(conn, None)
        self._feed(lambda: self._machine.closed(conn))

    async def _keep_time(self) -> None:
        """Tick the conversation when its next timer is due."""
        while True:
            self._wake.clear()
            deadline = self._machine.next_deadline_ms()
            timeout = None if deadline is None else max(0.0, (deadline - self._now()) / 1000)
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                try:
                    self._feed(lambda: self._machine.tick(self._now()))
                except Exception:
                    # The clock must keep running: every timer of every call depends on it.
                    logger.exception("could not handle a timer")


async def _awaited(outcome: Awaitable[Any]) -> None:
    try:
        await outcome
    except Exception:
        logger.exception("a streamer client callback raised")


def _retry_note(event: StateChanged) -> str:
    if event.retry_in_ms is not None:
        return f"; next attempt in {event.retry_in_ms} ms"
    if event.error is not None:
        return f": {event.error}"
    return ""


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _new_id(kind: str) -> str:
    return f"{'py' if kind == 'request' else 'm'}-{uuid.uuid4().hex}"


def _url_with_token(url: str, token: str) -> str:
    """`url` with `?token=` set (browsers cannot set headers, so the gateway reads the query)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))
