"""The asyncio client: one WebSocket connection to Streamer, shared by many requests.

How answers find their caller. Every message the client sends carries an
`id`, so every `acknowledgment`, `response` and `error` can be matched:
application requests use the request id itself; system actions use a fresh
message id of their own. `progress` and `complete` are matched by
`request_id`, `status` answers (which also answer `cancel`) by
`request.request_id`, `unsubscribed` by its `request_id`, and `pong` (which
carries nothing) answers the oldest `ping`.

How nothing is lost when the connection drops. Whatever a caller still
awaits is remembered: a request the server has not answered yet is sent again
with the same `id` (the protocol makes that idempotent: the server answers
again and starts no second run); a request it has accepted gets `subscribe`,
whose answer is the latest `progress` or the `complete`; pending system
actions are sent again. Updates whose `seq` is not above the last one seen
are dropped, so a snapshot that repeats what the caller already saw is
invisible to it.

How a resume survives the connection's rate limit. The server refuses a
message over its per-connection token bucket with a retryable `RATE_LIMITED`
whose `details` hold `limit_per_second` and `retry_after_ms`; nothing was
stored, so the client sends the same message again after that wait plus
jitter, a few times in a row per request or system action (a request's count
starts again once the server sends anything about it), before the caller sees
the error. A resume sends one message per awaited request at once, so it is the
usual way to meet the limit. The per-user cap on running requests answers
`RATE_LIMITED` too, without `limit_per_second`: it lasts until a request ends,
so it goes to the caller at once.

How a store outage is waited out. The server answers a message it could not
serve because a dependency is out with a retryable `UNAVAILABLE` (nothing was
stored; `details.retry_after_ms` says when to try again). The client sends the
same message again by the same mechanism, after `retry_after_ms` plus a jitter
that grows exponentially and is capped, for as long as the next resend still
falls within `unavailable_deadline_s` of the first refusal; then the caller
gets `Unavailable` (`client/resend.py` holds these decisions).

How no call waits forever. Every message that awaits an answer (a request
before its acknowledgment or response, a `subscribe` before its snapshot, a
system action) must be answered within `answer_timeout_s` of being sent, or
its caller gets `NoAnswer`. A server that answers with an error naming no
message (API Gateway's own "Internal server error" after an integration
failure carries only its own ids) cannot be matched: the timeout ends the
call, and its error quotes what the server sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from client.errors import (
    Conflict,
    ConnectionFailed,
    ConnectionLost,
    ConnectionRefused,
    ErrorInfo,
    NoAnswer,
    NotSynchronous,
    StreamerError,
    SubscriptionEnded,
    error_from_info,
)
from client.messages import (
    Acknowledgment,
    Completion,
    Pong,
    Progress,
    Rejection,
    RequestSnapshot,
    Response,
    Unsubscribed,
    encode_request,
    encode_system,
    new_request_id,
    parse_server_message,
)
from client.reconnect import ReconnectPolicy
from client.resend import Refusals, ResendLimits, given_up, is_resendable, resend_wait

logger = logging.getLogger("client")

ProgressCallback = Callable[[Progress], Awaitable[None] | None]
"""Called with each new `Progress` of a request, in `seq` order; may be async."""

# Under the gateway's 10-minute idle timeout, with room for a slow network.
DEFAULT_HEARTBEAT_SECONDS = 300.0
# As the JS client's `rateLimitRetries`.
DEFAULT_RATE_LIMIT_RETRIES = 3
# As the JS client's `unavailableDeadlineMs`: long enough to ride out a store
# hiccup, short enough that a person waiting is told.
DEFAULT_UNAVAILABLE_DEADLINE_SECONDS = 30.0
# As the JS client's `answerTimeoutMs`: API Gateway ends a route's integration
# after 29 s and answers itself, so a message unanswered for longer never will be.
DEFAULT_ANSWER_TIMEOUT_SECONDS = 35.0

_Event = Acknowledgment | Response | Progress | Completion | Rejection | StreamerError


@dataclass
class _TrackedRequest:
    """A request some caller awaits; its answers go to every watcher's queue in order."""

    request_id: str
    # The request itself while the server has not answered it (resent after a
    # reconnect), and the connection generation on which a client-generated id
    # was first sent (its acknowledgment there needs no `subscribe`).
    pending_message: str | None = None
    fresh_on: int | None = None
    resent: bool = False
    # `seq` starts at 1: a subscribe snapshot with seq 0 (nothing reported yet) is no news.
    last_seq: int = 0
    # Per refusing code, how often its messages were refused in a row since the
    # server last sent anything else about it, and when the first of those came.
    refused: dict[str, tuple[int, float]] = field(default_factory=dict)
    # Fires when what was last sent for it stays unanswered for the answer timeout.
    answer_timer: asyncio.TimerHandle | None = None
    sent_at: float = 0.0
    message_ids: set[str] = field(default_factory=set)
    watchers: list[asyncio.Queue[_Event]] = field(default_factory=list)

    def is_new(self, seq: int | None) -> bool:
        """Whether an update with this `seq` is news; remembers it if so."""
        if seq is None:
            return True
        if seq <= self.last_seq:
            return False
        self.last_seq = seq
        return True


@dataclass
class _SystemCall:
    """A pending `ping`, `status`, `cancel` or `unsubscribe` and the answer type it awaits."""

    message: str
    answer: type[Pong | RequestSnapshot | Unsubscribed]
    target: str | None
    future: asyncio.Future[Any]
    # Per refusing code, how often it was refused in a row and when the first came.
    refused: dict[str, tuple[int, float]] = field(default_factory=dict)
    answer_timer: asyncio.TimerHandle | None = None
    sent_at: float = 0.0


_Owner = _TrackedRequest | _SystemCall


class StreamerClient:
    """A connection to Streamer that runs requests and follows their progress.

    Use it as an async context manager::

        async with StreamerClient("ws://127.0.0.1:8080/", token) as client:
            result = await client.call("generate_report", {"pages": 5}, on_progress=print)

    Many calls may run at once on one client. After an unexpected drop the
    client reconnects by `reconnect` (jittered exponential backoff, bounded
    attempts) and resumes every request still awaited, so an awaiting `call`
    still returns. A `ping` goes out every `heartbeat_interval` seconds (None
    disables it) to stay under the gateway's idle timeout. A message the
    connection's rate limit refused is sent again after the wait the server
    names (at least 0.25 s) plus the policy's jitter, up to
    `rate_limit_retries` times in a row per request or system action, before
    the caller gets `RateLimited`. A message answered `UNAVAILABLE` is sent
    again the same way for up to `unavailable_deadline_s` seconds from the
    first such answer (0 turns that off), then the caller gets `Unavailable`.
    A message unanswered for `answer_timeout_s` seconds (None: wait forever)
    ends its caller's wait with `NoAnswer`. Errors are
    `client.errors.StreamerError` subclasses carrying the protocol's code.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        reconnect: ReconnectPolicy | None = None,
        heartbeat_interval: float | None = DEFAULT_HEARTBEAT_SECONDS,
        open_timeout: float = 10.0,
        rng: random.Random | None = None,
        rate_limit_retries: int = DEFAULT_RATE_LIMIT_RETRIES,
        unavailable_deadline_s: float = DEFAULT_UNAVAILABLE_DEADLINE_SECONDS,
        answer_timeout_s: float | None = DEFAULT_ANSWER_TIMEOUT_SECONDS,
    ) -> None:
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive or None")
        if rate_limit_retries < 0:
            raise ValueError("rate_limit_retries must not be negative")
        if unavailable_deadline_s < 0:
            raise ValueError("unavailable_deadline_s must not be negative")
        if answer_timeout_s is not None and answer_timeout_s <= 0:
            raise ValueError("answer_timeout_s must be positive or None")
        self._public_url = url
        self._url = _url_with_token(url, token)
        self._policy = reconnect or ReconnectPolicy()
        self._heartbeat_interval = heartbeat_interval
        self._open_timeout = open_timeout
        self._rng = rng or random.Random()
        self._resend_limits = ResendLimits(rate_limit_retries, unavailable_deadline_s, self._policy)
        self._answer_timeout = answer_timeout_s
        # The latest error the server sent that named no message, and when.
        self._unmatched: tuple[ErrorInfo, float] | None = None
        self._ws: ClientConnection | None = None
        self._generation = 0
        self._connected = asyncio.Event()
        self._failure: StreamerError | None = None
        self._requests: dict[str, _TrackedRequest] = {}
        self._aliases: dict[str, str] = {}
        self._calls: dict[str, _SystemCall] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._resends: set[asyncio.Task[None]] = set()

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
        reached. The first connection is not retried: a wrong URL or token
        should fail fast.
        """
        if self._ws is not None:
            raise RuntimeError("StreamerClient is already connected")
        self._ws = await self._open()
        self._generation = 1
        self._connected.set()
        self._tasks.append(asyncio.create_task(self._read_forever()))
        if self._heartbeat_interval is not None:
            self._tasks.append(asyncio.create_task(self._beat(self._heartbeat_interval)))

    async def close(self) -> None:
        """Close the connection; anything still awaited raises `ConnectionFailed`."""
        tasks = [*self._tasks, *self._resends]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._ws is not None:
            await self._ws.close()
        if self._failure is None:
            self._fail(ConnectionFailed("the client is closed"))

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

        A sync action's `response` returns its `data` at once. An async action
        is acknowledged, reports `Progress` to `on_progress` (in `seq` order,
        each at most once), and returns the `result` of its COMPLETED
        `complete`. `request_id` (1-128 of `[A-Za-z0-9_.:-]`, generated when
        None) is the idempotency key: calling again with the same id, action
        and payload starts no second run and still returns the result.

        Raises the typed error of the protocol code: with `request_status`
        FAILED or CANCELLED when the request ran and ended so, None when it
        was refused (e.g. `ValidationError`); `Unavailable` when the server
        still answered UNAVAILABLE at the end of `unavailable_deadline_s`;
        `NoAnswer` when a message got no answer within `answer_timeout_s`;
        `ConnectionLost` when the connection dropped and could not be
        re-established; ValueError for an action or id that breaks the
        protocol's rules and `PayloadTooLarge` for a message over 128 KiB,
        before anything is sent.
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

        The server answers with a snapshot: the latest `Progress` (handed to
        `on_progress`) or, if the request already ended, its `complete`, which
        returns at once; otherwise this waits for the `complete`. Returns the
        result or raises as `call` does (`NotFound` for an unknown id).
        """
        with self._watching(request_id) as events:
            await self._send(self._subscribe_message(request_id), self._requests[request_id])
            while True:
                event = await self._next_decision(request_id, events, on_progress)
                if isinstance(event, Completion):
                    return _result_of(event)

    async def unsubscribe(self, request_id: str) -> None:
        """Stop receiving a request's updates on this connection.

        A `call` or `subscribe` of this client still awaiting that request
        raises `SubscriptionEnded`.
        """
        await self._system_call("unsubscribe", Unsubscribed, request_id)
        request = self._requests.get(request_id)
        if request is not None:
            ended = SubscriptionEnded("UNSUBSCRIBED", "unsubscribed", request_id=request_id)
            for queue in request.watchers:
                queue.put_nowait(ended)

    async def status(self, request_id: str) -> RequestSnapshot:
        """The request's stored state; raises `NotFound` for an unknown id."""
        snapshot: RequestSnapshot = await self._system_call("status", RequestSnapshot, request_id)
        return snapshot

    async def cancel(self, request_id: str) -> Completion:
        """Cancel a request and return how it ended.

        The result's `status` is CANCELLED, or the status it had already
        ended with (a terminal request does not change). The server answers
        `cancel` with the request's `status`; a request still running ends
        when its worker notices, so the client subscribes first and waits for
        the `complete` even when another connection owns the request. Raises
        `NotFound` for an unknown id.
        """
        with self._watching(request_id) as events:
            await self._send(self._subscribe_message(request_id), self._requests[request_id])
            snapshot: RequestSnapshot = await self._system_call(
                "cancel", RequestSnapshot, request_id
            )
            if snapshot.is_terminal:
                return snapshot.completion()
            # A running request ends when its worker notices; the `complete` follows.
            while True:
                event = await self._next_decision(request_id, events, None)
                if isinstance(event, Completion):
                    return event

    async def ping(self) -> float:
        """Send `ping`, await `pong`; returns the round trip in seconds."""
        started = asyncio.get_running_loop().time()
        await self._system_call("ping", Pong, None)
        return asyncio.get_running_loop().time() - started

    async def _request(
        self,
        action: str,
        payload: Mapping[str, Any] | None,
        request_id: str | None,
        metadata: Mapping[str, str] | None,
        on_progress: ProgressCallback | None,
        sync_only: bool,
    ) -> Any:
        fresh = request_id is None
        request_id = request_id or new_request_id()
        message = encode_request(action, request_id, payload, metadata)
        with self._watching(request_id, message, fresh) as events:
            request = self._requests[request_id]
            await self._send(message, request)
            repeats = 0
            while True:
                try:
                    event = await self._next_decision(request_id, events, on_progress)
                except Conflict as conflict:
                    if (
                        not (conflict.retryable and request.resent)
                        or repeats >= self._policy.max_attempts
                    ):
                        raise
                    # This client's own repeat after a reconnect met the first run
                    # still going (a sync request): ask again until it has answered.
                    await asyncio.sleep(self._policy.delay(repeats, self._rng))
                    repeats += 1
                    await self._send(message, request)
                    continue
                if not isinstance(event, Acknowledgment):
                    return _result_of(event)
                if sync_only:
                    raise NotSynchronous(
                        "NOT_SYNCHRONOUS",
                        f"{action} is async: it was acknowledged, not answered",
                        {"estimated_duration_ms": event.estimated_duration_ms},
                        request_id=request_id,
                    )

    async def _next_decision(
        self,
        request_id: str,
        events: asyncio.Queue[_Event],
        on_progress: ProgressCallback | None,
    ) -> Acknowledgment | Response | Completion:
        """The next answer that decides something; progress goes to `on_progress` meanwhile."""
        while True:
            event = await events.get()
            if isinstance(event, StreamerError):
                raise event
            if isinstance(event, Rejection):
                raise error_from_info(event.error, request_id=request_id, request_status=None)
            if isinstance(event, Progress):
                if on_progress is not None:
                    outcome = on_progress(event)
                    if inspect.isawaitable(outcome):
                        await outcome
                continue
            return event

    @contextlib.contextmanager
    def _watching(
        self, request_id: str, pending_message: str | None = None, fresh: bool = False
    ) -> Iterator[asyncio.Queue[_Event]]:
        if self._failure is not None:
            raise self._failure
        request = self._requests.setdefault(request_id, _TrackedRequest(request_id))
        if pending_message is not None:
            request.pending_message = pending_message
            request.fresh_on = self._generation if fresh else None
        events: asyncio.Queue[_Event] = asyncio.Queue()
        request.watchers.append(events)
        try:
            yield events
        finally:
            request.watchers.remove(events)
            if not request.watchers:
                self._heard(request)
                del self._requests[request_id]
                for message_id in request.message_ids:
                    self._aliases.pop(message_id, None)

    def _subscribe_message(self, request_id: str) -> str:
        """A `subscribe` whose `error` answer (e.g. NOT_FOUND) reaches the request's watchers."""
        message_id = _new_message_id()
        self._requests[request_id].message_ids.add(message_id)
        self._aliases[message_id] = request_id
        return encode_system("subscribe", message_id, request_id)

    async def _system_call(
        self,
        action: str,
        answer: type[Pong | RequestSnapshot | Unsubscribed],
        target: str | None,
    ) -> Any:
        if self._failure is not None:
            raise self._failure
        message_id = _new_message_id()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        call = _SystemCall(encode_system(action, message_id, target), answer, target, future)
        self._calls[message_id] = call
        try:
            await self._send(call.message, call)
            return await future
        finally:
            self._calls.pop(message_id, None)
            self._heard(call)

    async def _send(self, text: str, owner: _Owner) -> None:
        """Send a message `owner` awaits the answer to."""
        if self._ws is None:
            raise RuntimeError("StreamerClient is not connected: use `async with` or connect()")
        await self._connected.wait()
        if self._failure is not None:
            raise self._failure
        # A message lost to a drop needs no retry here: whatever it belongs to
        # is still awaited, so the reconnect sends it again.
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(text)
        self._expect_answer(owner)

    def _expect_answer(self, owner: _Owner) -> None:
        """Start the answer timeout for what was just sent for `owner` (again)."""
        if self._answer_timeout is None:
            return
        if owner.answer_timer is not None:
            owner.answer_timer.cancel()
        loop = asyncio.get_running_loop()
        owner.sent_at = loop.time()
        owner.answer_timer = loop.call_later(
            self._answer_timeout, self._no_answer, owner, self._generation
        )

    def _heard(self, owner: _Owner) -> None:
        """The server answered about `owner`: nothing it awaits is overdue."""
        if owner.answer_timer is not None:
            owner.answer_timer.cancel()
            owner.answer_timer = None

    def _no_answer(self, owner: _Owner, generation: int) -> None:
        owner.answer_timer = None
        # On a connection since replaced, or being replaced, the resume sends it
        # again and starts a new timeout.
        if generation != self._generation or not self._connected.is_set():
            return
        if self._failure is not None:
            return
        reason = f"no answer within {self._answer_timeout} s"
        if self._unmatched is not None and self._unmatched[1] >= owner.sent_at:
            unmatched = self._unmatched[0]
            reason += (
                "; meanwhile the server sent an error naming no message: "
                f"{unmatched.code}: {unmatched.message}"
            )
        if isinstance(owner, _SystemCall):
            if not owner.future.done():
                owner.future.set_exception(NoAnswer(reason, request_id=owner.target))
            return
        if self._requests.get(owner.request_id) is owner:
            error = NoAnswer(reason, request_id=owner.request_id)
            for queue in owner.watchers:
                queue.put_nowait(error)

    async def _open(self) -> ClientConnection:
        try:
            # permessage-deflate costs the gateway ~3x memory per connection.
            return await connect(self._url, compression=None, open_timeout=self._open_timeout)
        except InvalidStatus as exc:
            raise ConnectionRefused(exc.response.status_code) from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise ConnectionFailed(f"could not connect to {self._public_url}: {exc}") from exc

    async def _read_forever(self) -> None:
        ws = self._ws
        assert ws is not None
        while True:
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    try:
                        await self._dispatch(raw)
                    except Exception:
                        # One bad message must not stop the reader every caller depends on.
                        logger.exception("could not handle a server message")
            self._connected.clear()
            logger.info("connection to %s dropped; reconnecting", self._public_url)
            try:
                ws = await self._reconnect()
            except StreamerError as exc:
                self._fail(exc)
                return
            self._ws = ws
            self._generation += 1
            await self._resume(ws)
            self._connected.set()

    async def _reconnect(self) -> ClientConnection:
        last_error: StreamerError | None = None
        for attempt in range(self._policy.max_attempts):
            await asyncio.sleep(self._policy.delay(attempt, self._rng))
            try:
                return await self._open()
            except ConnectionFailed as exc:
                if not exc.retryable:
                    raise
                last_error = exc
                logger.info("reconnect attempt %d failed: %s", attempt + 1, exc)
        raise ConnectionLost(
            f"connection to {self._public_url} dropped; {self._policy.max_attempts} "
            f"reconnect attempts failed (last: {last_error})"
        )

    async def _resume(self, ws: ClientConnection) -> None:
        messages: list[tuple[str, _Owner]] = []
        for request in self._requests.values():
            if request.pending_message is not None:
                messages.append((request.pending_message, request))
                request.resent = True
            else:
                messages.append((self._subscribe_message(request.request_id), request))
        messages.extend((call.message, call) for call in self._calls.values())
        try:
            for message, owner in messages:
                await ws.send(message)
                self._expect_answer(owner)
        except ConnectionClosed:
            # The reader sees the same close and reconnects again.
            return

    async def _dispatch(self, raw: str | bytes) -> None:
        message = parse_server_message(raw)
        if isinstance(message, Pong):
            self._answer(Pong, None, message, only_oldest=True)
        elif isinstance(message, RequestSnapshot):
            self._answer(RequestSnapshot, message.request_id, message, only_oldest=False)
        elif isinstance(message, Unsubscribed):
            only_oldest = message.request_id is None
            self._answer(Unsubscribed, message.request_id, message, only_oldest=only_oldest)
        elif isinstance(message, Rejection):
            self._reject(message)
        elif message is not None:
            await self._deliver(message)
        else:
            logger.debug("skipped a message this client does not know: %.200r", raw)

    def _answer(self, answer: type, target: str | None, value: Any, *, only_oldest: bool) -> None:
        for message_id, call in list(self._calls.items()):
            if call.answer is answer and (target is None or call.target == target):
                del self._calls[message_id]
                if not call.future.done():
                    call.future.set_result(value)
                if only_oldest:
                    return

    def _reject(self, rejection: Rejection) -> None:
        answered = rejection.request_id
        if answered is None:
            logger.warning("server error answering no message: %s", rejection.error)
            self._unmatched = (rejection.error, asyncio.get_running_loop().time())
            return
        if is_resendable(rejection.error):
            error = self._resend_later(answered, rejection.error)
            if error is None:
                return
            rejection = Rejection(answered, error)
        call = self._calls.pop(answered, None)
        if call is not None:
            if not call.future.done():
                call.future.set_exception(
                    error_from_info(rejection.error, request_id=call.target, request_status=None)
                )
            return
        request = self._requests.get(self._aliases.get(answered, answered))
        if request is not None:
            self._heard(request)
            for queue in request.watchers:
                queue.put_nowait(rejection)
            return
        # A server may name the request a system action was about, not the message id.
        for message_id, call in list(self._calls.items()):
            if call.target == answered:
                del self._calls[message_id]
                if not call.future.done():
                    call.future.set_exception(
                        error_from_info(rejection.error, request_id=answered, request_status=None)
                    )

    def _awaiting(self, message_id: str) -> tuple[_TrackedRequest | _SystemCall, str] | None:
        """Who still awaits the answer to the message `message_id`, and that message.

        None when nothing does: the request or system action has ended, or an
        answered request's id names no message to send again.
        """
        call = self._calls.get(message_id)
        if call is not None:
            return call, call.message
        request_id = self._aliases.get(message_id)
        if request_id is not None:
            # A `subscribe`: the same id again, so its answer still finds the request.
            return self._requests[request_id], encode_system("subscribe", message_id, request_id)
        request = self._requests.get(message_id)
        if request is not None and request.pending_message is not None:
            return request, request.pending_message
        return None

    def _resend_later(self, message_id: str, error: ErrorInfo) -> ErrorInfo | None:
        """Send a refused message again later if it may be (`client.resend` decides).

        None when it will be; otherwise the error its caller gets: as the
        server sent it when nothing awaits the message any more, saying the
        client gave up when its resends are over (`rate_limit_retries` for the
        rate limit, `unavailable_deadline_s` for UNAVAILABLE).
        """
        awaiting = self._awaiting(message_id)
        if awaiting is None:
            return error
        owner, _ = awaiting
        self._heard(owner)
        now = asyncio.get_running_loop().time()
        count, since = owner.refused.get(error.code, (0, now))
        wait = resend_wait(error, Refusals(count, now - since), self._resend_limits, self._rng)
        if wait is None:
            return given_up(error, Refusals(count + 1, now - since))
        owner.refused[error.code] = (count + 1, since)
        why = "rate limited" if error.code == "RATE_LIMITED" else f"answered {error.code}"
        logger.info("message %s was %s; sending it again in %.2f s", message_id, why, wait)
        task = asyncio.create_task(self._resend(message_id, owner, self._generation, wait))
        self._resends.add(task)
        task.add_done_callback(self._resends.discard)
        return None

    async def _resend(
        self, message_id: str, owner: _TrackedRequest | _SystemCall, generation: int, wait: float
    ) -> None:
        await asyncio.sleep(wait)
        awaiting = self._awaiting(message_id)
        if awaiting is None or awaiting[0] is not owner or self._failure is not None:
            return
        # On a connection since replaced (or being replaced) the resume sends it.
        if generation != self._generation or not self._connected.is_set() or self._ws is None:
            return
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(awaiting[1])
        self._expect_answer(owner)

    async def _deliver(self, message: Acknowledgment | Response | Progress | Completion) -> None:
        request = self._requests.get(message.request_id)
        if request is None:
            return
        # The server answers about it again: a later refusal (a resume's) starts a new count.
        request.refused.clear()
        self._heard(request)
        if isinstance(message, Progress | Completion) and not request.is_new(message.seq):
            return
        if not isinstance(message, Progress):
            request.pending_message = None
        if isinstance(message, Acknowledgment) and request.fresh_on != self._generation:
            # Accepted earlier (a repeated id) or on a connection since replaced:
            # this connection is not the owner, so it must ask for the updates.
            await self._send(self._subscribe_message(request.request_id), request)
        for queue in request.watchers:
            queue.put_nowait(message)

    def _fail(self, error: StreamerError) -> None:
        self._failure = error
        self._connected.set()
        for request in self._requests.values():
            self._heard(request)
            for queue in request.watchers:
                queue.put_nowait(error)
        for call in self._calls.values():
            self._heard(call)
            if not call.future.done():
                call.future.set_exception(error)
        self._calls.clear()

    async def _beat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                async with asyncio.timeout(interval):
                    await self.ping()
            except TimeoutError:
                logger.info("heartbeat ping got no pong within %s s", interval)
            except StreamerError:
                return


def _result_of(event: Response | Completion) -> Any:
    if isinstance(event, Response):
        if event.success:
            return event.data
        info = event.error or ErrorInfo("INTERNAL_ERROR", "response without an error object")
        raise error_from_info(info, request_id=event.request_id, request_status="FAILED")
    if event.status == "COMPLETED":
        return event.result
    code = "CANCELLED" if event.status == "CANCELLED" else "INTERNAL_ERROR"
    info = event.error or ErrorInfo(code, f"request ended {event.status}")
    raise error_from_info(info, request_id=event.request_id, request_status=event.status)


def _new_message_id() -> str:
    return f"m-{uuid.uuid4().hex}"


def _url_with_token(url: str, token: str) -> str:
    """`url` with `?token=` set (browsers cannot set headers, so the gateway reads the query)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))
