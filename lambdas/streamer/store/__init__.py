"""Reads and conditional writes of connections, requests and subscriptions.

One module per table (`connections`, `requests` and `request_writes`,
`subscriptions`); keys come from `streamer.keys`, the requests' status
changes from the lifecycle table (`streamer.transitions`). Every status change
is one conditional update on the request item, so two workers racing on a
request cannot both win; a lost race is reported as a `False`/`None` return,
never as an exception. Anything else DynamoDB or the network does surfaces as
`StoreUnavailable` (`streamer.store.errors`) so callers can ask to be retried.
"""

from __future__ import annotations

from streamer.keys import poll_partition, sweep_partition
from streamer.models import decider_of
from streamer.store.connections import (
    charge_bucket,
    connections_of_user,
    forget_connection,
    get_connection,
    refill_bucket,
    save_connection,
    touch_connection,
)
from streamer.store.errors import StoreUnavailable
from streamer.store.heartbeats import beat, last_beats
from streamer.store.request_writes import (
    claim_poll,
    claim_request,
    complete_sent,
    defer_request,
    finish_request,
    postpone_request,
    redrive_request,
    request_cancel,
    save_progress,
    schedule_retry,
    take_over_request,
    wait_request,
)
from streamer.store.requests import (
    Unreadable,
    cancel_requested,
    count_active,
    create_request,
    due_items,
    due_requests,
    get_request,
    unkeyed_due_items,
    waiting_requests,
)
from streamer.store.subscriptions import (
    Watchers,
    ask_to_stop,
    get_subscription,
    retain,
    stop_asked,
    subscribe,
    subscribe_key,
    subscribers,
    subscribers_of_key,
    unsubscribe,
    unsubscribe_key,
    watchers,
)

__all__ = [
    "StoreUnavailable",
    "Unreadable",
    "Watchers",
    "ask_to_stop",
    "beat",
    "cancel_requested",
    "charge_bucket",
    "claim_poll",
    "claim_request",
    "complete_sent",
    "connections_of_user",
    "count_active",
    "create_request",
    "decider_of",
    "defer_request",
    "due_items",
    "due_requests",
    "finish_request",
    "forget_connection",
    "get_connection",
    "get_request",
    "get_subscription",
    "last_beats",
    "poll_partition",
    "postpone_request",
    "redrive_request",
    "refill_bucket",
    "request_cancel",
    "retain",
    "save_connection",
    "save_progress",
    "schedule_retry",
    "stop_asked",
    "subscribe",
    "subscribe_key",
    "subscribers",
    "subscribers_of_key",
    "sweep_partition",
    "take_over_request",
    "touch_connection",
    "unkeyed_due_items",
    "unsubscribe",
    "unsubscribe_key",
    "wait_request",
    "waiting_requests",
    "watchers",
]
