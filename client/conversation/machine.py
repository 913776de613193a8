"""The client's conversation as a sans-I/O state machine: connections, tokens, timers.

Inputs are method calls (the application's calls, what the connections did,
the clock moving); each returns an `Output` of I/O to do, events and call
results. Nothing here touches a socket or reads a clock: `tick(at)` moves
time. What a message means for the requests, calls and topics tracked is in
`client.conversation.answers`; client/conversation/README.md specifies both
and the vectors under client/conversation/vectors pin them for both clients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from client.conversation.answers import Answers
from client.conversation.options import Options
from client.conversation.outputs import (
    Close,
    Failed,
    FetchToken,
    Handle,
    Ok,
    Open,
    Output,
    Send,
    StateChanged,
)
from client.conversation.timing import backoff_ms, rotation_at_ms, suspended_wait_ms
from client.conversation.tracking import Connection, SystemCall, TrackedRequest, Watcher
from client.errors import (
    ConnectionFailed,
    ConnectionLost,
    ConnectionRefused,
    StreamerError,
    TokenFailed,
)
from client.messages import encode_request, encode_system, is_valid_request_id

STATES = ("idle", "connecting", "connected", "disconnected", "suspended", "closed", "failed")


class Conversation(Answers):
    """One client's conversation with Streamer over a succession of connections."""

    def __init__(
        self,
        options: Options,
        *,
        now_ms: int,
        new_id: Callable[[str], str],
        random: Callable[[], float],
    ) -> None:
        super().__init__(options, now_ms=now_ms, new_id=new_id, random=random)
        self.state = "idle"
        self._conns: dict[int, Connection] = {}
        self._next_conn = 1
        self._opening: int | None = None
        # A `fetch_token` is out, for an open of this purpose.
        self._token_for: str | None = None
        self._retiring: int | None = None
        self._rotating = False
        self._attempts = 0
        self._token_failures = 0
        self._rotation_failures = 0
        self._disconnected_since = 0
        self._reconnect_at: int | None = None
        self._connect_handle: Handle | None = None
        self._connected_once = False
        self._first_refresh = False

    # ----- the application's calls

    def connect(self, handle: Handle = "connect") -> Output:
        """Start connecting; `handle` ends `Ok` once connected, or `Failed`."""
        if self.state != "idle":
            raise RuntimeError(f"the client was already started (state {self.state})")
        return self._step(lambda: self._connect(handle))

    def request(
        self,
        handle: Handle | None,
        action: str,
        payload: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        sync_only: bool = False,
    ) -> Output:
        """Run an action (`sync_only`: refuse an acknowledgment with NOT_SYNCHRONOUS).

        `handle` None: the request id is the handle. Raises ValueError or
        `PayloadTooLarge` before anything is sent when the message breaks the
        protocol's rules.
        """
        fresh = request_id is None
        request_id = request_id if request_id is not None else self._new_id("request")
        text = encode_request(action, request_id, payload, metadata)
        owner = handle if handle is not None else request_id

        def run() -> None:
            if self._refused_while_down(owner):
                return
            tracked = self._requests.setdefault(request_id, TrackedRequest(request_id))
            tracked.pending_text, tracked.fresh, tracked.fresh_on = text, fresh, None
            tracked.again = not fresh and request_id in self._ended_ids
            tracked.watchers.append(Watcher(owner, "send" if sync_only else "call"))
            self._send_request(tracked)

        return self._step(run)

    def subscribe(self, handle: Handle, request_id: str) -> Output:
        """Follow an existing request to its end."""
        return self._step(lambda: self._watch(handle, _checked(request_id), "subscribe"))

    def cancel(self, handle: Handle, request_id: str) -> Output:
        """Cancel a request; `handle` ends with how it ended (a `Completion`)."""

        def run() -> None:
            if self._watch(handle, _checked(request_id), "cancel"):
                self._system_call(handle, "cancel", target=request_id)

        return self._step(run)

    def status(self, handle: Handle, request_id: str) -> Output:
        """Ask for a request's snapshot."""
        return self._step(lambda: self._guarded_call(handle, "status", target=request_id))

    def unsubscribe(self, handle: Handle, request_id: str) -> Output:
        """Stop following a request; its watchers end with UNSUBSCRIBED."""
        return self._step(lambda: self._guarded_call(handle, "unsubscribe", target=request_id))

    def ping(self, handle: Handle) -> Output:
        """Send `ping`; `handle` ends at the `pong`."""
        return self._step(lambda: self._guarded_call(handle, "ping"))

    def subscribe_topic(self, handle: Handle, topic: str) -> Output:
        """Follow a topic (restored on every new connection); `handle` gets its notifications."""
        encode_system("subscribe", "m", topic=topic)
        return self._step(lambda: self._follow_topic(handle, topic))

    def unsubscribe_topic(self, handle: Handle, topic: str) -> Output:
        """Stop following a topic."""
        encode_system("unsubscribe", "m", topic=topic)

        def run() -> None:
            if self._refused_while_down(handle):
                return
            self._drop_topic(topic)
            self._system_call(handle, "unsubscribe", topic=topic)

        return self._step(run)

    def abandon(self, handle: Handle) -> Output:
        """The caller of `handle` stopped waiting (cancelled): forget what only it awaited."""
        return self._step(lambda: self._forget_handle(handle))

    def close(self) -> Output:
        """Close the client: every connection closes and every pending call fails."""
        return self._step(self._close)

    # ----- what the connections and the token provider did

    def token(self, token: str) -> Output:
        """The token provider answered the last `FetchToken`."""

        def run() -> None:
            purpose, self._token_for = self._token_for, None
            if purpose is not None:
                self._open(purpose, token)

        return self._step(run)

    def token_failed(self) -> Output:
        """The token provider raised."""

        def run() -> None:
            purpose, self._token_for = self._token_for, None
            if purpose is not None:
                self._token_failures += 1
                self._open_failed(purpose, TokenFailed("the token provider failed"), token=True)

        return self._step(run)

    def opened(self, conn: int) -> Output:
        """Connection `conn` is open."""
        return self._step(lambda: self._opened(conn))

    def refused(self, conn: int, status: int) -> Output:
        """The handshake of `conn` was refused with HTTP `status`."""

        def run() -> None:
            purpose = self._take_opening(conn)
            if purpose is None:
                return
            error = ConnectionRefused(status)
            if status == 401 and self.options.token is None:
                self._token_failures += 1
                self._open_failed(purpose, error, token=True)
            else:
                # A fixed token refused with 401 cannot change; a rotation's old
                # connection still serves, so only a reconnect gives up on it.
                fatal = status == 403 or (status == 401 and purpose != "rotate")
                self._open_failed(purpose, error, fatal=fatal)

        return self._step(run)

    def unreachable(self, conn: int, reason: str = "unreachable") -> Output:
        """Connection `conn` could not be opened (DNS, refused, open timeout)."""

        def run() -> None:
            purpose = self._take_opening(conn)
            if purpose is not None:
                self._open_failed(purpose, ConnectionFailed(f"could not connect: {reason}"))

        return self._step(run)

    def closed(self, conn: int) -> Output:
        """Connection `conn` ended, whoever closed it."""

        def run() -> None:
            if conn == self._opening:
                purpose = self._take_opening(conn)
                assert purpose is not None
                self._open_failed(purpose, ConnectionFailed("closed while opening"))
            elif conn == self._retiring:
                self._retiring = None
                self._conns.pop(conn, None)
            elif conn == self._current:
                self._drop(conn)

        return self._step(run)

    def receive(self, conn: int, text: str | bytes) -> Output:
        """A message arrived on connection `conn`."""

        def run() -> None:
            if conn not in (self._current, self._retiring):
                return
            self._conns[conn].dead_at = None
            self._dispatch(conn, text)

        return self._step(run)

    def tick(self, at: int) -> Output:
        """The clock moves to `at`: due timers fire in deadline order."""

        def run() -> None:
            while (due := self.next_deadline_ms()) is not None and due <= at:
                self._now = max(self._now, due)
                self._fire_due()
            self._now = max(self._now, at)

        return self._step(run)

    def next_deadline_ms(self) -> int | None:
        """When the next timer fires (None: no timer)."""
        times = [self._reconnect_at, *self._owner_deadlines()]
        current = self._live_current()
        if current is not None:
            times += [current.dead_at, self._ping_at(current)]
            if not self._rotating:
                times.append(current.rotate_at)
        due = [t for t in times if t is not None]
        return min(due) if due else None

    # ----- steps

    def _step(self, action: Callable[[], None]) -> Output:
        self._out = Output()
        action()
        self._retire_if_caught_up()
        out, self._out = self._out, Output()
        return out

    def _set_state(
        self, state: str, retry_in_ms: int | None = None, error: StreamerError | None = None
    ) -> None:
        self.state = state
        self._out.events.append(StateChanged(state, retry_in_ms, error))

    def _connect(self, handle: Handle) -> None:
        self._connect_handle = handle
        self._set_state("connecting")
        self._begin_open("first")

    def _begin_open(self, purpose: str) -> None:
        if self.options.token is None:
            self._token_for = purpose
            self._out.io.append(FetchToken())
        else:
            self._open(purpose, self.options.token)

    def _open(self, purpose: str, token: str) -> None:
        conn = Connection(self._next_conn, token, purpose)
        self._next_conn += 1
        self._conns[conn.number] = conn
        self._opening = conn.number
        self._out.io.append(Open(conn.number, token))

    def _take_opening(self, conn: int) -> str | None:
        if conn != self._opening:
            return None
        self._opening = None
        return self._conns.pop(conn).purpose

    def _opened(self, number: int) -> None:
        if number != self._opening:
            # Opened after the client stopped wanting it (closed or failed meanwhile).
            self._out.io.append(Close(number))
            return
        self._opening = None
        conn = self._conns[number]
        conn.opened_at = conn.last_send = self._now
        conn.rotate_at = rotation_at_ms(self.options, self._now, conn.token)
        self._token_failures = 0
        if conn.purpose == "rotate":
            self._retiring, self._current = self._current, number
            self._rotating = False
            self._rotation_failures = 0
        else:
            self._current = number
            self._attempts = 0
            self._set_state("connected")
            if not self._connected_once and self._connect_handle is not None:
                self._out.results.append(Ok(self._connect_handle, None))
            self._connected_once = True
        self._resume()

    def _open_failed(
        self, purpose: str, error: StreamerError, *, token: bool = False, fatal: bool = False
    ) -> None:
        out_of_tokens = token and self._token_failures >= self.options.max_token_failures
        if purpose == "first":
            refused_401 = isinstance(error, ConnectionRefused) and error.status_code == 401
            if token and refused_401 and not self._first_refresh:
                # The first connect's one second chance: a new token after a 401.
                self._first_refresh = True
                self._begin_open("first")
            else:
                # Not retried: a wrong URL, token or provider fails fast.
                self._fail(error)
        elif fatal or out_of_tokens:
            self._fail(error)
        elif purpose == "rotate":
            # The old connection still serves; try again after a backoff.
            self._rotating = False
            current = self._live_current()
            if current is not None:
                wait = backoff_ms(self.options, self._rotation_failures, self._random())
                current.rotate_at = self._now + wait
            self._rotation_failures += 1
        else:
            self._attempts += 1
            limit = self.options.max_reconnect_attempts
            if limit is not None and self._attempts >= limit:
                self._fail(ConnectionLost(f"{self._attempts} reconnect attempts failed: {error}"))
            else:
                self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self._now - self._disconnected_since >= self.options.suspend_after_ms:
            state, wait = "suspended", suspended_wait_ms(self.options, self._random())
        else:
            state, wait = "disconnected", backoff_ms(self.options, self._attempts, self._random())
        self._reconnect_at = self._now + wait
        self._set_state(state, wait)

    def _drop(self, number: int) -> None:
        """The current connection is gone."""
        self._conns.pop(number, None)
        self._current = None
        for wait in self._waits():
            wait.forget_connection()
        if self._retiring is not None:
            # A rotation's new connection died: the old one still serves.
            self._current, self._retiring = self._retiring, None
            old = self._conns[self._current]
            old.rotate_at = self._now + backoff_ms(
                self.options, self._rotation_failures, self._random()
            )
            self._rotation_failures += 1
            self._resume()
            return
        self._disconnected_since = self._now
        self._attempts = 0
        if self._rotating:
            # The rotation's open (or its token) is under way: it is the reconnect now.
            self._rotating = False
            if self._opening is not None:
                self._conns[self._opening].purpose = "reconnect"
            else:
                self._token_for = "reconnect"
            self._set_state("disconnected", 0)
        elif self.options.max_reconnect_attempts == 0:
            self._fail(ConnectionLost("the connection dropped and reconnecting is off"))
        else:
            self._schedule_reconnect()

    def _fail(self, error: StreamerError) -> None:
        self._close_connections()
        self._set_state("failed", error=error)
        self._end_everything(error)

    def _close(self) -> None:
        if self.state == "closed":
            return
        self._close_connections()
        self._set_state("closed")
        self._end_everything(ConnectionFailed("the client is closed"))

    def _close_connections(self) -> None:
        for number in (self._retiring, self._current, self._opening):
            if number is not None:
                self._out.io.append(Close(number))
        self._conns.clear()
        self._retiring = self._current = self._opening = None
        self._token_for = None
        self._reconnect_at = None
        self._rotating = False

    def _end_everything(self, error: StreamerError) -> None:
        self._failure = error
        if self._connect_handle is not None and not self._connected_once:
            self._out.results.append(Failed(self._connect_handle, error))
        self._fail_all(error)

    # ----- timers

    def _live_current(self) -> Connection | None:
        if self.state != "connected" or self._current is None:
            return None
        return self._conns.get(self._current)

    def _ping_at(self, conn: Connection) -> int | None:
        interval = self.options.ping_interval_ms
        return None if interval is None else conn.last_send + interval

    def _fire_due(self) -> None:
        now = self._now
        current = self._live_current()
        if current is not None and current.dead_at is not None and current.dead_at <= now:
            self._out.io.append(Close(current.number))
            self._drop(current.number)
        if self._reconnect_at is not None and self._reconnect_at <= now:
            self._reconnect_at = None
            self._set_state("connecting")
            self._begin_open("reconnect")
        current = self._live_current()
        if (
            current is not None
            and not self._rotating
            and current.rotate_at is not None
            and current.rotate_at <= now
        ):
            self._rotating = True
            current.rotate_at = None
            self._begin_open("rotate")
        self._fire_owner_timers()
        current = self._live_current()
        ping_at = self._ping_at(current) if current is not None else None
        if current is not None and ping_at is not None and ping_at <= now:
            self._send_text(current, encode_system("ping", self._new_id("message")))
            if current.dead_at is None:
                current.dead_at = now + self.options.pong_timeout_ms

    def _retire_if_caught_up(self) -> None:
        """Close a rotation's old connection once the new one has answered the whole resume."""
        if self._retiring is None or self._current is None:
            return
        if any(wait.conn == self._current for wait in self._waits()):
            return
        self._out.io.append(Close(self._retiring))
        self._conns.pop(self._retiring, None)
        self._retiring = None

    # ----- sending (Answers calls these)

    def _send_text(self, conn: Connection, text: str) -> None:
        self._out.io.append(Send(conn.number, text))
        conn.last_send = self._now

    def _guarded_call(
        self, handle: Handle, action: str, *, target: str | None = None, topic: str | None = None
    ) -> SystemCall | None:
        if target is not None:
            _checked(target)
        if self._refused_while_down(handle):
            return None
        return self._system_call(handle, action, target=target, topic=topic)


def _checked(request_id: str) -> str:
    if not isinstance(request_id, str) or not is_valid_request_id(request_id):
        raise ValueError(f"request id must be 1-128 characters of [A-Za-z0-9_.:-]: {request_id!r}")
    return request_id
