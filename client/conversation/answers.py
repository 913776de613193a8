"""What each server message means for what the conversation tracks.

How an answer finds its owner, what a resume sends, and when a message went
unanswered too long; topics and refusals have their own modules, the state
is `client.conversation.book`'s. `Conversation` adds the connections and
timers on top.

How answers find their owner: every message the client sends carries an `id`
(a request its request id, a system action a fresh message id), so
`acknowledgment`, `response` and `error` match by id; `progress` and
`complete` by `request_id`; `status` (also the answer to `cancel`) by
`request.request_id`; `unsubscribed` by `request_id` or `topic`; `subscribed`
and a topic's notification by `topic`; `pong` answers the oldest `ping`.
"""

from __future__ import annotations

from collections.abc import Iterator

from client.conversation.outputs import (
    Failed,
    Handle,
    Ok,
    ProgressEvent,
)
from client.conversation.refusals import Refusals
from client.conversation.topics import Topics
from client.conversation.tracking import (
    SystemCall,
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


class Answers(Topics, Refusals):
    """The meaning of server messages for what the conversation tracks."""

    # ----- starting calls

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
        if not snapshot.is_terminal:
            # A running request ends when its worker notices; the `complete` follows.
            return
        for watcher in tracked.watchers:
            if watcher.kind == "cancel" and watcher.handle == handle:
                tracked.watchers.remove(watcher)
                self._out.results.append(Ok(handle, snapshot.completion()))
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

    def _deliver(
        self, conn: int, message: Acknowledgment | Response | Progress | Completion
    ) -> None:
        tracked = self._requests.get(message.request_id)
        if tracked is None:
            return
        late = tracked.again and tracked.pending_text is not None
        if late and isinstance(message, Progress | Completion):
            # The earlier tracking's `subscribe` snapshot: this request's answer
            # is an acknowledgment (then a subscribe brings the run's news) or
            # an error such as CONFLICT, which must not be pre-empted.
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
                # How it ended, whoever ended it: the cancel's own answer no longer matters.
                self._out.results.append(Ok(watcher.handle, message))
                self._forget_calls_of(watcher.handle)
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
