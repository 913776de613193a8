"""What the conversation tracks: requests, system calls, topics, and sending for them.

`Book` holds the state; `Topics` and `Refusals` (and `Answers` on top of
both) read the server's messages against it; `Conversation` adds the
connections and timers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from client.conversation.options import Options
from client.conversation.outputs import Failed, Handle, Output
from client.conversation.tracking import (
    Connection,
    SystemCall,
    TopicSubscription,
    TrackedRequest,
    Waiting,
)
from client.errors import ErrorInfo, StreamerError
from client.messages import encode_system
from client.reconnect import ReconnectPolicy
from client.resend import ResendLimits

# How many ended ids the application chose are remembered (see `_untrack_if_unwatched`).
ENDED_IDS_KEPT = 256


class Book:
    """The tracked requests, calls and topics, and how messages for them go out."""

    def __init__(
        self,
        options: Options,
        *,
        now_ms: int,
        new_id: Callable[[str], str],
        random: Callable[[], float],
    ) -> None:
        self.options = options
        self._now = now_ms
        self._new_id = new_id
        self._random = random
        self._out = Output()
        self._current: int | None = None
        self._failure: StreamerError | None = None
        self._requests: dict[str, TrackedRequest] = {}
        # Message id of a request's `subscribe` -> the request id.
        self._aliases: dict[str, str] = {}
        # Ids the application chose whose tracking ended, oldest first.
        self._ended_ids: dict[str, None] = {}
        self._calls: dict[str, SystemCall] = {}
        self._topics: dict[str, TopicSubscription] = {}
        # Message id of a topic's `subscribe` -> the topic.
        self._topic_ids: dict[str, str] = {}
        # Per topic: the latest notification timestamp delivered, and what came at it.
        self._seen: dict[str, tuple[int, list[dict[str, Any]]]] = {}
        # The latest error the server sent that named no message, and when.
        self._unmatched: tuple[ErrorInfo, int] | None = None
        policy = ReconnectPolicy(
            initial_delay=options.initial_delay_ms / 1000,
            max_delay=options.max_delay_ms / 1000,
            multiplier=options.multiplier,
        )
        self._limits = ResendLimits(
            options.rate_limit_retries, options.unavailable_deadline_ms / 1000, policy
        )

    # The connection layer provides these.

    def _live_current(self) -> Connection | None:
        raise NotImplementedError

    def _send_text(self, conn: Connection, text: str) -> None:
        raise NotImplementedError

    def _refused_while_down(self, handle: Handle) -> bool:
        """A call on a failed or closed client ends at once with the reason."""
        if self._failure is None:
            return False
        self._out.results.append(Failed(handle, self._failure))
        return True

    def _send(self, wait: Waiting, text: str) -> bool:
        """Send `text` for the owner of `wait` now if connected (else the resume will)."""
        wait.resend_at = wait.resend_text = None
        conn = self._live_current()
        if conn is None:
            return False
        self._send_text(conn, text)
        wait.conn, wait.sent_at = conn.number, self._now
        timeout = self.options.answer_timeout_ms
        wait.deadline = None if timeout is None else self._now + timeout
        return True

    def _send_request(self, tracked: TrackedRequest) -> None:
        assert tracked.pending_text is not None
        if self._send(tracked.wait, tracked.pending_text):
            tracked.sends += 1
            if tracked.fresh and tracked.fresh_on is None:
                tracked.fresh_on = tracked.wait.conn

    def _send_subscribe(self, tracked: TrackedRequest) -> None:
        message_id = self._new_id("message")
        tracked.message_ids.add(message_id)
        self._aliases[message_id] = tracked.request_id
        self._send(tracked.wait, encode_system("subscribe", message_id, tracked.request_id))

    def _waits(self) -> Iterator[Waiting]:
        for tracked in self._requests.values():
            yield tracked.wait
        for call in self._calls.values():
            yield call.wait
        for subscription in self._topics.values():
            yield subscription.wait

    def _forget_calls_of(self, handle: Handle) -> None:
        for message_id, call in list(self._calls.items()):
            if call.handle == handle:
                del self._calls[message_id]

    def _end_request(self, tracked: TrackedRequest, error: StreamerError) -> None:
        for watcher in tracked.watchers:
            self._out.results.append(Failed(watcher.handle, error))
            if watcher.kind == "cancel":
                # Its `cancel` message ends with it: one result per call.
                self._forget_calls_of(watcher.handle)
        tracked.watchers.clear()
        self._untrack_if_unwatched(tracked)

    def _untrack_if_unwatched(self, tracked: TrackedRequest) -> None:
        """No watcher left: the request is no longer tracked.

        An id the application chose is remembered (the last few hundred): a
        `subscribe` snapshot still on its way must not be taken for news
        about a new request with the same id.
        """
        if tracked.watchers or self._requests.get(tracked.request_id) is not tracked:
            return
        del self._requests[tracked.request_id]
        for message_id in tracked.message_ids:
            self._aliases.pop(message_id, None)
        if tracked.fresh:
            return
        self._ended_ids.pop(tracked.request_id, None)
        self._ended_ids[tracked.request_id] = None
        if len(self._ended_ids) > ENDED_IDS_KEPT:
            del self._ended_ids[next(iter(self._ended_ids))]
