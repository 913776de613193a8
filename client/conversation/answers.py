"""What the conversation tracks and what each server message means for it.

Requests (with the calls watching them), system calls and topics; how an
answer finds its owner, which refusals are sent again and when, what a resume
sends, and when a message went unanswered too long. `Conversation` adds the
connections and timers on top.

How answers find their owner: every message the client sends carries an `id`
(a request its request id, a system action a fresh message id), so
`acknowledgment`, `response` and `error` match by id; `progress` and
`complete` by `request_id`; `status` (also the answer to `cancel`) by
`request.request_id`; `unsubscribed` by `request_id` or `topic`; `subscribed`
and a topic's notification by `topic`; `pong` answers the oldest `ping`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from client.conversation.options import Options
from client.conversation.outputs import (
    Failed,
    Handle,
    NotificationEvent,
    Ok,
    Output,
    ProgressEvent,
    TopicNotification,
)
from client.conversation.tracking import (
    Connection,
    SystemCall,
    TopicSubscription,
    TrackedRequest,
    Waiting,
    Watcher,
)
from client.errors import (
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
    Notification,
    Pong,
    Progress,
    Rejection,
    RequestSnapshot,
    Response,
    Subscribed,
    Unsubscribed,
    encode_system,
    parse_server_message,
)
from client.reconnect import ReconnectPolicy
from client.resend import Refusals, ResendLimits, given_up, is_resendable, resend_wait


class _Draw:
    """`random.Random.uniform` over the conversation's own draws (for client.resend)."""

    def __init__(self, random: Callable[[], float]) -> None:
        self._random = random

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self._random()


class Answers:
    """The tracked requests, calls and topics, and the meaning of server messages."""

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

    # ----- starting calls

    def _refused_while_down(self, handle: Handle) -> bool:
        """A call on a failed or closed client ends at once with the reason."""
        if self._failure is None:
            return False
        self._out.results.append(Failed(handle, self._failure))
        return True

    def _watch(self, handle: Handle, request_id: str, kind: str) -> bool:
        if self._refused_while_down(handle):
            return False
        tracked = self._requests.setdefault(request_id, TrackedRequest(request_id))
        tracked.watchers.append(Watcher(handle, kind))
        self._send_subscribe(tracked)
        return True

    def _system_call(
        self, handle: Handle, action: str, *, target: str | None = None, topic: str | None = None
    ) -> SystemCall:
        message_id = self._new_id("message")
        text = encode_system(action, message_id, target, topic=topic)
        call = SystemCall(message_id, action, text, handle, target, topic)
        self._calls[message_id] = call
        self._send(call.wait, text)
        return call

    def _follow_topic(self, handle: Handle, topic: str) -> None:
        if self._refused_while_down(handle):
            return
        subscription = self._topics.get(topic)
        if subscription is None:
            subscription = self._topics[topic] = TopicSubscription(topic)
            subscription.handles.append(handle)
            subscription.unconfirmed.append(handle)
            self._send_topic_subscribe(subscription)
            return
        subscription.handles.append(handle)
        if subscription.confirmed:
            self._out.results.append(Ok(handle, None))
        else:
            subscription.unconfirmed.append(handle)

    def _drop_topic(self, topic: str) -> None:
        subscription = self._topics.pop(topic, None)
        if subscription is None:
            return
        for message_id in subscription.message_ids:
            self._topic_ids.pop(message_id, None)
        for handle in subscription.unconfirmed:
            self._out.results.append(
                Failed(handle, SubscriptionEnded("UNSUBSCRIBED", f"unsubscribed from {topic}"))
            )

    def _forget_handle(self, handle: Handle) -> None:
        for tracked in list(self._requests.values()):
            tracked.watchers = [w for w in tracked.watchers if w.handle != handle]
            self._untrack_if_unwatched(tracked)
        for message_id, call in list(self._calls.items()):
            if call.handle == handle:
                del self._calls[message_id]
        for topic, subscription in list(self._topics.items()):
            if handle in subscription.handles:
                subscription.handles.remove(handle)
                if handle in subscription.unconfirmed:
                    subscription.unconfirmed.remove(handle)
                if not subscription.handles:
                    self._drop_topic(topic)

    # ----- sending

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

    def _send_topic_subscribe(self, subscription: TopicSubscription) -> None:
        message_id = self._new_id("message")
        subscription.message_ids.add(message_id)
        self._topic_ids[message_id] = subscription.topic
        text = encode_system("subscribe", message_id, topic=subscription.topic)
        self._send(subscription.wait, text)

    def _resume(self) -> None:
        """On a new connection: everything still awaited, asked again."""
        for wait in self._waits():
            wait.refused.clear()
        for tracked in list(self._requests.values()):
            if tracked.pending_text is not None:
                self._send_request(tracked)
            else:
                self._send_subscribe(tracked)
        for call in list(self._calls.values()):
            self._send(call.wait, call.text)
        for subscription in list(self._topics.values()):
            self._send_topic_subscribe(subscription)

    def _waits(self) -> Iterator[Waiting]:
        for tracked in self._requests.values():
            yield tracked.wait
        for call in self._calls.values():
            yield call.wait
        for subscription in self._topics.values():
            yield subscription.wait

    # ----- timers

    def _owner_deadlines(self) -> Iterator[int | None]:
        for wait in self._waits():
            yield wait.deadline
            yield wait.resend_at

    def _fire_owner_timers(self) -> None:
        now = self._now
        for tracked in list(self._requests.values()):
            wait = tracked.wait
            if wait.resend_at is not None and wait.resend_at <= now:
                text = wait.resend_text
                assert text is not None
                if self._send(wait, text) and text == tracked.pending_text:
                    tracked.sends += 1
        for owner in [*self._calls.values(), *self._topics.values()]:
            wait = owner.wait
            if wait.resend_at is not None and wait.resend_at <= now:
                text = wait.resend_text
                assert text is not None
                self._send(wait, text)
        for tracked in list(self._requests.values()):
            if tracked.wait.deadline is not None and tracked.wait.deadline <= now:
                self._end_request(tracked, self._no_answer(tracked.wait, tracked.request_id))
        for message_id, call in list(self._calls.items()):
            if call.wait.deadline is not None and call.wait.deadline <= now:
                del self._calls[message_id]
                self._out.results.append(
                    Failed(call.handle, self._no_answer(call.wait, call.target))
                )
        for subscription in self._topics.values():
            if subscription.wait.deadline is not None and subscription.wait.deadline <= now:
                error = self._no_answer(subscription.wait, None)
                for handle in subscription.unconfirmed:
                    self._out.results.append(Failed(handle, error))
                subscription.unconfirmed.clear()

    def _no_answer(self, wait: Waiting, request_id: str | None) -> NoAnswer:
        wait.conn = wait.deadline = None
        reason = f"no answer within {self.options.answer_timeout_ms} ms"
        if self._unmatched is not None and self._unmatched[1] >= wait.sent_at:
            unmatched = self._unmatched[0]
            reason += (
                "; meanwhile the server sent an error naming no message: "
                f"{unmatched.code}: {unmatched.message}"
            )
        return NoAnswer(reason, request_id=request_id)

    # ----- ending

    def _fail_all(self, error: StreamerError) -> None:
        for tracked in list(self._requests.values()):
            self._end_request(tracked, error)
        for call in self._calls.values():
            self._out.results.append(Failed(call.handle, error))
        self._calls.clear()
        for subscription in self._topics.values():
            for handle in subscription.unconfirmed:
                self._out.results.append(Failed(handle, error))
        self._topics.clear()
        self._topic_ids.clear()

    def _end_request(self, tracked: TrackedRequest, error: StreamerError) -> None:
        for watcher in tracked.watchers:
            self._out.results.append(Failed(watcher.handle, error))
            if watcher.kind == "cancel":
                # Its `cancel` message ends with it: one result per call.
                for message_id, call in list(self._calls.items()):
                    if call.handle == watcher.handle:
                        del self._calls[message_id]
        tracked.watchers.clear()
        self._untrack_if_unwatched(tracked)

    def _untrack_if_unwatched(self, tracked: TrackedRequest) -> None:
        if tracked.watchers or self._requests.get(tracked.request_id) is not tracked:
            return
        del self._requests[tracked.request_id]
        for message_id in tracked.message_ids:
            self._aliases.pop(message_id, None)

    # ----- what the server said

    def _dispatch(self, conn: int, text: str | bytes) -> None:
        message = parse_server_message(text)
        if isinstance(message, Pong):
            self._answer_pong(conn)
        elif isinstance(message, RequestSnapshot):
            self._answer_snapshot(conn, message)
        elif isinstance(message, Unsubscribed):
            self._answer_unsubscribed(conn, message)
        elif isinstance(message, Subscribed):
            self._topic_confirmed(conn, message.topic)
        elif isinstance(message, Notification):
            self._notify(conn, message)
        elif isinstance(message, Rejection):
            self._reject(conn, message)
        elif message is not None:
            self._deliver(conn, message)

    def _answer_pong(self, conn: int) -> None:
        for message_id, call in self._calls.items():
            if call.action == "ping":
                del self._calls[message_id]
                self._out.results.append(Ok(call.handle, None))
                return

    def _answer_snapshot(self, conn: int, snapshot: RequestSnapshot) -> None:
        for message_id, call in list(self._calls.items()):
            if call.answer != "status" or call.target != snapshot.request_id:
                continue
            del self._calls[message_id]
            if call.action == "status":
                self._out.results.append(Ok(call.handle, snapshot))
            else:
                self._cancel_answered(call.handle, snapshot)

    def _cancel_answered(self, handle: Handle, snapshot: RequestSnapshot) -> None:
        tracked = self._requests.get(snapshot.request_id)
        if tracked is None:
            return
        for watcher in tracked.watchers:
            if watcher.kind != "cancel" or watcher.handle != handle:
                continue
            ending = snapshot.completion() if snapshot.is_terminal else watcher.early_complete
            if ending is None:
                # A running request ends when its worker notices; the `complete` follows.
                watcher.cancel_answered = True
                return
            tracked.watchers.remove(watcher)
            self._out.results.append(Ok(handle, ending))
            self._untrack_if_unwatched(tracked)
            return

    def _answer_unsubscribed(self, conn: int, answer: Unsubscribed) -> None:
        for message_id, call in list(self._calls.items()):
            if call.action != "unsubscribe":
                continue
            if answer.topic is not None and call.topic != answer.topic:
                continue
            if answer.request_id is not None and call.target != answer.request_id:
                continue
            del self._calls[message_id]
            self._out.results.append(Ok(call.handle, None))
            tracked = self._requests.get(call.target) if call.target is not None else None
            if tracked is not None:
                ended = SubscriptionEnded("UNSUBSCRIBED", "unsubscribed", request_id=call.target)
                self._end_request(tracked, ended)
            if answer.request_id is None and answer.topic is None:
                return

    def _topic_confirmed(self, conn: int, topic: str) -> None:
        subscription = self._topics.get(topic)
        if subscription is None:
            return
        subscription.wait.heard(conn)
        subscription.confirmed = True
        for handle in subscription.unconfirmed:
            self._out.results.append(Ok(handle, None))
        subscription.unconfirmed.clear()

    def _notify(self, conn: int, notification: Notification) -> None:
        if notification.topic is not None:
            self._topic_confirmed(conn, notification.topic)
        if not self._is_news(notification):
            return
        self._out.events.append(NotificationEvent(notification))
        subscription = self._topics.get(notification.topic) if notification.topic else None
        if subscription is not None:
            for handle in subscription.handles:
                self._out.events.append(TopicNotification(handle, notification))

    def _is_news(self, notification: Notification) -> bool:
        """Whether it was not delivered already (a retained one answering a re-subscribe)."""
        topic, timestamp = notification.topic, notification.timestamp
        if topic is None or timestamp is None:
            return True
        body = notification.to_json()
        last = self._seen.get(topic)
        if last is None or timestamp > last[0]:
            self._seen[topic] = (timestamp, [body])
            return True
        if timestamp < last[0] or body in last[1]:
            return False
        last[1].append(body)
        return True

    def _reject(self, conn: int, rejection: Rejection) -> None:
        answered = rejection.request_id
        if answered is None:
            self._unmatched = (rejection.error, self._now)
            self._out.notes.append(f"server error answering no message: {rejection.error}")
            return
        error = rejection.error
        owner = self._refused_owner(answered)
        if owner is not None:
            wait, text = owner
            if wait.conn == conn:
                wait.conn = wait.deadline = None
            if is_resendable(error) and text is not None:
                later = self._resend_later(wait, text, error)
                if later is None:
                    return
                error = later
        self._refused(answered, error)

    def _refused_owner(self, message_id: str) -> tuple[Waiting, str | None] | None:
        """Who awaits the answer to `message_id`, and that message (None: nothing to resend)."""
        call = self._calls.get(message_id)
        if call is not None:
            return call.wait, call.text
        request_id = self._aliases.get(message_id)
        if request_id is not None and request_id in self._requests:
            text = encode_system("subscribe", message_id, request_id)
            return self._requests[request_id].wait, text
        tracked = self._requests.get(message_id)
        if tracked is not None:
            return tracked.wait, tracked.pending_text
        topic = self._topic_ids.get(message_id)
        if topic is not None and topic in self._topics:
            return self._topics[topic].wait, encode_system("subscribe", message_id, topic=topic)
        return None

    def _resend_later(self, wait: Waiting, text: str, error: ErrorInfo) -> ErrorInfo | None:
        """Plan a resend (`client.resend` decides); None if planned, else the caller's error."""
        count, since = wait.refused.get(error.code, (0, self._now))
        before = Refusals(count, (self._now - since) / 1000)
        seconds = resend_wait(error, before, self._limits, _Draw(self._random))  # type: ignore[arg-type]
        if seconds is None:
            return given_up(error, Refusals(count + 1, (self._now - since) / 1000))
        wait.refused[error.code] = (count + 1, since)
        wait.resend_at = self._now + round(seconds * 1000)
        wait.resend_text = text
        why = "rate limited" if error.code == "RATE_LIMITED" else f"answered {error.code}"
        self._out.notes.append(f"a message was {why}; sending it again in {seconds:.2f} s")
        return None

    def _refused(self, answered: str, error: ErrorInfo) -> None:
        call = self._calls.pop(answered, None)
        if call is not None:
            typed = error_from_info(error, request_id=call.target, request_status=None)
            self._out.results.append(Failed(call.handle, typed))
            tracked = self._requests.get(call.target) if call.action == "cancel" else None
            if tracked is not None and call.target is not None:
                tracked.watchers = [w for w in tracked.watchers if w.handle != call.handle]
                self._untrack_if_unwatched(tracked)
            return
        topic = self._topic_ids.get(answered)
        if topic is not None:
            subscription = self._topics.pop(topic, None)
            if subscription is not None:
                for message_id in subscription.message_ids:
                    self._topic_ids.pop(message_id, None)
                typed = error_from_info(error, request_id=None, request_status=None)
                for handle in subscription.unconfirmed:
                    self._out.results.append(Failed(handle, typed))
            return
        tracked = self._requests.get(self._aliases.get(answered, answered))
        if tracked is not None:
            if self._conflict_resend(tracked, answered, error):
                return
            typed = error_from_info(error, request_id=tracked.request_id, request_status=None)
            self._end_request(tracked, typed)
            return
        # A server may name the request a system action was about, not the message id.
        for message_id, other in list(self._calls.items()):
            if other.target == answered:
                del self._calls[message_id]
                typed = error_from_info(error, request_id=answered, request_status=None)
                self._out.results.append(Failed(other.handle, typed))

    def _conflict_resend(self, tracked: TrackedRequest, answered: str, error: ErrorInfo) -> bool:
        """This client's own repeat (after a reconnect) met the first run still going: ask again."""
        if not (
            error.code == "CONFLICT"
            and error.retryable
            and answered == tracked.request_id
            and tracked.sends > 1
            and tracked.pending_text is not None
            and tracked.conflict_repeats < self.options.conflict_retries
        ):
            return False
        policy = self._limits.policy
        wait = policy.delay(tracked.conflict_repeats, _Draw(self._random))  # type: ignore[arg-type]
        tracked.conflict_repeats += 1
        tracked.wait.resend_at = self._now + round(wait * 1000)
        tracked.wait.resend_text = tracked.pending_text
        return True

    def _deliver(
        self, conn: int, message: Acknowledgment | Response | Progress | Completion
    ) -> None:
        tracked = self._requests.get(message.request_id)
        if tracked is None:
            return
        tracked.wait.heard(conn)
        if isinstance(message, Progress | Completion) and not tracked.is_new(message.seq):
            return
        if not isinstance(message, Progress):
            tracked.pending_text = None
        if isinstance(message, Acknowledgment):
            if not tracked.fresh or tracked.fresh_on != conn:
                # Accepted earlier (an id the application chose) or on another
                # connection: this one is not the owner and must ask for the updates.
                self._send_subscribe(tracked)
            self._acknowledged(tracked)
        elif isinstance(message, Progress):
            for watcher in tracked.watchers:
                if watcher.kind in ("call", "subscribe"):
                    self._out.events.append(ProgressEvent(watcher.handle, message))
        else:
            self._ended(tracked, message)

    def _acknowledged(self, tracked: TrackedRequest) -> None:
        for watcher in [w for w in tracked.watchers if w.kind == "send"]:
            tracked.watchers.remove(watcher)
            error = NotSynchronous(
                "NOT_SYNCHRONOUS",
                "the action is async: it was acknowledged, not answered",
                request_id=tracked.request_id,
            )
            self._out.results.append(Failed(watcher.handle, error))
        self._untrack_if_unwatched(tracked)

    def _ended(self, tracked: TrackedRequest, message: Response | Completion) -> None:
        for watcher in list(tracked.watchers):
            if watcher.kind == "cancel" and isinstance(message, Completion):
                if not watcher.cancel_answered:
                    watcher.early_complete = message
                    continue
                self._out.results.append(Ok(watcher.handle, message))
            else:
                self._out.results.append(_outcome(watcher.handle, message))
            tracked.watchers.remove(watcher)
        self._untrack_if_unwatched(tracked)


def _outcome(handle: Handle, event: Response | Completion) -> Ok | Failed:
    if isinstance(event, Response):
        if event.success:
            return Ok(handle, event.data)
        info = event.error or ErrorInfo("INTERNAL_ERROR", "response without an error object")
        return Failed(
            handle, error_from_info(info, request_id=event.request_id, request_status="FAILED")
        )
    if event.status == "COMPLETED":
        return Ok(handle, event.result)
    code = "CANCELLED" if event.status == "CANCELLED" else "INTERNAL_ERROR"
    info = event.error or ErrorInfo(code, f"request ended {event.status}")
    return Failed(
        handle, error_from_info(info, request_id=event.request_id, request_status=event.status)
    )
