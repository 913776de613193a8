"""The subscriptions table: who follows a request or a topic, and a topic's retained message."""

from __future__ import annotations

from typing import Any

from streamer.keys import request_key
from streamer.models import Subscription
from streamer.store.errors import get_or_none, guard


def subscribe(owner: str, request_id: str, connection_id: str, endpoint: str, ttl: int) -> None:
    subscribe_key(request_key(owner, request_id), connection_id, endpoint, ttl)


def unsubscribe(owner: str, request_id: str, connection_id: str) -> None:
    unsubscribe_key(request_key(owner, request_id), connection_id)


def subscribers(owner: str, request_id: str) -> list[Subscription]:
    return subscribers_of_key(request_key(owner, request_id))


def subscribe_key(key: str, connection_id: str, endpoint: str, ttl: int) -> None:
    """Subscribe a connection to a request's or a topic's key."""
    subscription = Subscription(
        request_key=key, connection_id=connection_id, endpoint=endpoint, ttl=ttl
    )
    guard(subscription.save)


def unsubscribe_key(key: str, connection_id: str) -> None:
    guard(Subscription(request_key=key, connection_id=connection_id).delete)


def subscribers_of_key(key: str) -> list[Subscription]:
    return guard(lambda: list(Subscription.query(key)))


def get_subscription(key: str, connection_id: str) -> Subscription | None:
    return guard(lambda: get_or_none(Subscription, key, connection_id))


def retain(key: str, row_id: str, message: dict[str, Any], ttl: int) -> None:
    """Keep `message` as the last one of a topic, in its reserved row `row_id`."""
    row = Subscription(request_key=key, connection_id=row_id, message=message, ttl=ttl)
    guard(row.save)
