"""Refusals: which `error` answers are sent again, when, and who gets the others.

Part of the conversation's tracking (`client.conversation.answers`); the
timing decisions are `client.resend`'s.
"""

from __future__ import annotations

from collections.abc import Callable

from client.conversation.book import Book
from client.conversation.outputs import Failed
from client.conversation.tracking import TrackedRequest, Waiting
from client.errors import ErrorInfo, error_from_info
from client.messages import Rejection, encode_system
from client.resend import Refusals as RefusalCount
from client.resend import given_up, is_resendable, resend_wait


class _Draw:
    """`random.Random.uniform` over the conversation's own draws (for client.resend)."""

    def __init__(self, random: Callable[[], float]) -> None:
        self._random = random

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self._random()


class Refusals(Book):
    """What the server refused and what becomes of it."""

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
        before = RefusalCount(count, (self._now - since) / 1000)
        seconds = resend_wait(error, before, self._limits, _Draw(self._random))  # type: ignore[arg-type]
        if seconds is None:
            return given_up(error, RefusalCount(count + 1, (self._now - since) / 1000))
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
