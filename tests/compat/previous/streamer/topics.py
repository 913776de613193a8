"""Topics: named channels external systems publish to and connections subscribe to.

A topic is scoped to a tenant: `job-123` of tenant A and `job-123` of tenant
B are different topics. Its subscriptions live in the subscriptions table
under the key `topic!{tenant}!{topic}`, which no request key can equal
(request keys are `tenant#user#id`, and ids cannot contain `!`). The same
partition holds one reserved row, connection id `~retained!{tenant}!{topic}`,
with the topic's last notification, so a connection that subscribes after a
publish still gets it. (Per topic, not one constant: the by_connection index
is keyed by connection id, and one constant would put every topic's retained
row in one index partition.)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from streamer import store
from streamer.config import CONNECTION_TTL_S, MAX_MESSAGE_BYTES
from streamer.delivery import Delivery, Sent
from streamer.protocol import ID_PATTERN, encode

log = logging.getLogger(__name__)

#: Connection ids of retained-notification rows start with this (no real connection id does).
RETAINED_PREFIX = "~retained"
#: Event names: what a publisher calls the thing that happened.
MAX_EVENT_CHARS = 128


def topic_key(tenant_id: str, topic: str) -> str:
    """The subscriptions table's key of a topic."""
    return f"topic!{tenant_id}!{topic}"


def retained_id(key: str) -> str:
    """The reserved connection id of a topic's retained row."""
    return RETAINED_PREFIX + key.removeprefix("topic")


def notification_message(topic: str | None, event: str, data: Any, timestamp: int) -> dict:
    """The server message a publish delivers (`topic` absent when sent to a user)."""
    message: dict[str, Any] = {"type": "notification"}
    if topic is not None:
        message["topic"] = topic
    message.update(event=event, data=data, timestamp=timestamp)
    return message


def subscribed_message(topic: str) -> dict[str, Any]:
    return {"type": "subscribed", "topic": topic}


def unsubscribed_message(topic: str) -> dict[str, Any]:
    return {"type": "unsubscribed", "topic": topic}


class InvalidNotification(Exception):
    """A published message that cannot be delivered as it is; the text says why."""


@dataclass(frozen=True)
class Notification:
    """One validated publish: to a tenant's topic, or to every connection of one user."""

    tenant_id: str
    event: str
    data: Any = None
    topic: str | None = None
    user_id: str | None = None

    @classmethod
    def parse(cls, body: Any) -> Notification:
        """Validate `{tenant_id, topic | user_id, event, data}`; raises `InvalidNotification`."""
        if isinstance(body, str | bytes):
            try:
                body = json.loads(body)
            except ValueError:
                raise InvalidNotification("message is not valid JSON") from None
        if not isinstance(body, dict):
            raise InvalidNotification("message must be a JSON object")

        def name(field: str) -> str | None:
            value = body.get(field)
            if value is None:
                return None
            if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
                raise InvalidNotification(
                    f"`{field}` must be 1-128 characters of A-Z a-z 0-9 _ . : -"
                )
            return value

        tenant_id, topic, user_id = name("tenant_id"), name("topic"), name("user_id")
        if tenant_id is None:
            raise InvalidNotification("`tenant_id` is required")
        if (topic is None) == (user_id is None):
            raise InvalidNotification("exactly one of `topic` and `user_id` is required")
        event = body.get("event")
        if not isinstance(event, str) or not 0 < len(event) <= MAX_EVENT_CHARS:
            raise InvalidNotification(f"`event` must be a string of 1-{MAX_EVENT_CHARS} characters")
        notification = cls(tenant_id, event, body.get("data"), topic, user_id)
        size = len(encode(notification.message(0)).encode("utf-8"))
        if size > MAX_MESSAGE_BYTES - 64:
            raise InvalidNotification(
                f"the notification is {size} bytes; a WebSocket message is at most "
                f"{MAX_MESSAGE_BYTES}"
            )
        return notification

    def message(self, timestamp: int) -> dict[str, Any]:
        return notification_message(self.topic, self.event, self.data, timestamp)


@dataclass
class PublishReport:
    """What one publish reached."""

    delivered: int = 0
    gone: int = 0
    failed: int = 0

    def count(self, sent: Sent) -> None:
        if sent is Sent.DELIVERED:
            self.delivered += 1
        elif sent is Sent.GONE:
            self.gone += 1
        else:
            self.failed += 1


def publish(
    notification: Notification, delivery: Delivery, *, now: int, retention_s: int
) -> PublishReport:
    """Retain (topics) and send one notification; raises `store.StoreUnavailable`.

    The retained row is written before the subscribers are read, and a
    subscriber reads it after subscribing, so a subscribe racing a publish
    gets the notification at least once (possibly twice: as its answer and
    as a delivery).
    """
    report = PublishReport()
    message = notification.message(now)
    if notification.topic is not None:
        key = topic_key(notification.tenant_id, notification.topic)
        if retention_s > 0:
            store.retain(key, retained_id(key), message, now // 1000 + retention_s)
        targets = [
            (s.connection_id, s.endpoint or "")
            for s in store.subscribers_of_key(key)
            if not s.connection_id.startswith(RETAINED_PREFIX)
        ]
    else:
        targets = [
            (c.connection_id, c.endpoint)
            for c in store.connections_of_user(notification.tenant_id, notification.user_id or "")
        ]
    for connection_id, endpoint in targets:
        report.count(delivery.send(connection_id, endpoint, message))
    return report


def subscribe(
    tenant_id: str, topic: str, connection_id: str, endpoint: str, now: int
) -> dict[str, Any]:
    """Subscribe a connection; the answer is the retained notification, or `subscribed`.

    The subscription's TTL is the connection record's, which is past API
    Gateway's two-hour maximum connection duration from the handshake, so it
    never expires under a live connection; `$disconnect` removes it earlier.
    """
    key = topic_key(tenant_id, topic)
    connection = store.get_connection(connection_id)
    ttl = int(connection.ttl) if connection is not None else now // 1000 + CONNECTION_TTL_S
    store.subscribe_key(key, connection_id, endpoint, ttl)
    retained = store.get_subscription(key, retained_id(key))
    # DynamoDB deletes expired items late (within days): check the expiry here.
    if retained is not None and retained.message and int(retained.ttl or 0) > now // 1000:
        return dict(retained.message)
    return subscribed_message(topic)


def unsubscribe(tenant_id: str, topic: str, connection_id: str) -> dict[str, Any]:
    store.unsubscribe_key(topic_key(tenant_id, topic), connection_id)
    return unsubscribed_message(topic)
