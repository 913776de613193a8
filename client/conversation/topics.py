"""Topics: following them, their confirmations, which notifications are news.

Part of the conversation's tracking (`client.conversation.answers`): a topic
is subscribed again on every new connection, so the retained notification
answering that `subscribe` must not be delivered twice.
"""

from __future__ import annotations

from typing import Any

from client.conversation.book import Book
from client.conversation.outputs import (
    Failed,
    Handle,
    NotificationEvent,
    Ok,
    TopicNotification,
)
from client.conversation.tracking import TopicSubscription
from client.errors import SubscriptionEnded
from client.messages import Notification, encode_system


class Topics(Book):
    """The topics this client follows."""

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

    def _send_topic_subscribe(self, subscription: TopicSubscription) -> None:
        message_id = self._new_id("message")
        subscription.message_ids.add(message_id)
        self._topic_ids[message_id] = subscription.topic
        text = encode_system("subscribe", message_id, topic=subscription.topic)
        self._send(subscription.wait, text)

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
        if not is_news(self._seen, notification):
            return
        self._out.events.append(NotificationEvent(notification))
        subscription = self._topics.get(notification.topic) if notification.topic else None
        if subscription is not None:
            for handle in subscription.handles:
                self._out.events.append(TopicNotification(handle, notification))


def is_news(seen: dict[str, tuple[int, list[dict[str, Any]]]], notification: Notification) -> bool:
    """Whether `notification` was not delivered already; remembers it in `seen` if so.

    Per topic, `seen` holds the latest timestamp delivered and what came at
    it: an older notification, or the same one again (a retained notification
    answering a re-subscribe), is not news.
    """
    topic, timestamp = notification.topic, notification.timestamp
    if topic is None or timestamp is None:
        return True
    body = notification.to_json()
    last = seen.get(topic)
    if last is None or timestamp > last[0]:
        seen[topic] = (timestamp, [body])
        return True
    if timestamp < last[0] or body in last[1]:
        return False
    last[1].append(body)
    return True
