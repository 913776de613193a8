"""The subscriptions table: who follows a request or a topic, and a topic's retained message.

A request's subscriptions are written, deleted and read at the request's
decider (`models.decider_of`), its subscribers with a consistent read. So
`subscribe` (write, then read the request again) and the runner's last read
of the subscribers (after the request's end is written) meet at one table:
either the subscribe's second read sees the end, or the runner's read sees
the subscription. Written in the caller's region instead, a subscription
would reach the runner's replica only after the replication lag ("How
DynamoDB global tables work": replication is asynchronous), and a request
ending within that lag would never reach the new subscriber. Topics are
per tenant, not per request, and stay in the caller's region.

A cancel of a running request also leaves a stop marker in the request's
partition (`keys.stop_marker_id`), so the worker's subscriber read, which it
makes at most once a second to know its audience, is also a cancellation
check: a reporting request needs one read a second less
(docs/benchmarks.md, section 6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamer.keys import request_key, stop_marker_id
from streamer.models import Subscription, decider_of, subscriptions_in
from streamer.store.errors import get_or_none, guard


def subscribe(owner: str, request_id: str, connection_id: str, endpoint: str, ttl: int) -> None:
    """Subscribe a connection to a request, at the request's decider."""
    model = subscriptions_in(decider_of(owner))
    subscription = model(
        request_key=request_key(owner, request_id),
        connection_id=connection_id,
        endpoint=endpoint,
        ttl=ttl,
    )
    guard(subscription.save)


def unsubscribe(owner: str, request_id: str, connection_id: str) -> None:
    model = subscriptions_in(decider_of(owner))
    guard(model(request_key=request_key(owner, request_id), connection_id=connection_id).delete)


@dataclass(frozen=True)
class Watchers:
    """A request's subscriptions partition, read at once: who follows it, and whether a
    cancel asked its worker to stop."""

    subscribers: list[Subscription]
    stop_asked: bool


def watchers(owner: str, request_id: str) -> Watchers:
    """A request's subscribers and stop marker, read consistently at its decider."""
    model = subscriptions_in(decider_of(owner))
    key = request_key(owner, request_id)
    rows = guard(lambda: list(model.query(key, consistent_read=True)))
    marker = stop_marker_id(key)
    return Watchers(
        subscribers=[row for row in rows if row.connection_id != marker],
        stop_asked=any(row.connection_id == marker for row in rows),
    )


def subscribers(owner: str, request_id: str) -> list[Subscription]:
    """A request's subscribers, read consistently at its decider."""
    return watchers(owner, request_id).subscribers


def ask_to_stop(owner: str, request_id: str, ttl: int) -> None:
    """Leave the stop marker of a request a cancel flagged, at its decider, until `ttl`."""
    model = subscriptions_in(decider_of(owner))
    key = request_key(owner, request_id)
    guard(model(request_key=key, connection_id=stop_marker_id(key), ttl=ttl).save)


def stop_asked(owner: str, request_id: str) -> bool:
    """Whether a request's stop marker is there (one consistent read of that row alone)."""
    model = subscriptions_in(decider_of(owner))
    key = request_key(owner, request_id)
    marker = stop_marker_id(key)
    return guard(lambda: get_or_none(model, key, marker, consistent=True)) is not None


def subscribe_key(key: str, connection_id: str, endpoint: str, ttl: int) -> None:
    """Subscribe a connection to a topic's key."""
    subscription = Subscription(
        request_key=key, connection_id=connection_id, endpoint=endpoint, ttl=ttl
    )
    guard(subscription.save)


def unsubscribe_key(key: str, connection_id: str) -> None:
    guard(Subscription(request_key=key, connection_id=connection_id).delete)


def subscribers_of_key(key: str) -> list[Subscription]:
    """A topic's subscribers (and its retained row)."""
    return guard(lambda: list(Subscription.query(key)))


def get_subscription(key: str, connection_id: str) -> Subscription | None:
    return guard(lambda: get_or_none(Subscription, key, connection_id))


def retain(key: str, row_id: str, message: dict[str, Any], ttl: int) -> None:
    """Keep `message` as the last one of a topic, in its reserved row `row_id`."""
    row = Subscription(request_key=key, connection_id=row_id, message=message, ttl=ttl)
    guard(row.save)
