"""PynamoDB models of the three tables, keyed as `streamer.schema` says.

Statuses and their allowed transitions are defined in `streamer.transitions`,
keys in `streamer.keys`; both are re-exported here for the modules that read
requests.

Table names come from configuration at run time (`bind_models`), not at
import, so tests and the local stack can point them anywhere.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.indexes import (
    AllProjection,
    GlobalSecondaryIndex,
    IncludeProjection,
    KeysOnlyProjection,
)
from pynamodb.models import Model

from streamer import aws, schema
from streamer.keys import owner_key, request_key
from streamer.transitions import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    PROCESSING,
    RETRYING,
    TERMINAL,
    WAITING,
    Status,
)

SYNC = "sync"
ASYNC = "async"


class ConnectionsByUser(GlobalSecondaryIndex):
    class Meta:
        index_name = schema.CONNECTIONS_BY_USER
        projection = IncludeProjection(["endpoint"])

    user_key = UnicodeAttribute(hash_key=True)


class Connection(Model):
    """An open WebSocket connection and the identity the authorizer gave it."""

    class Meta:
        table_name = "streamer-connections"

    connection_id = UnicodeAttribute(hash_key=True)
    user_key = UnicodeAttribute()
    user_id = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    permissions = UnicodeSetAttribute(null=True)
    endpoint = UnicodeAttribute()
    connected_at = NumberAttribute()
    last_seen = NumberAttribute()
    ttl = NumberAttribute()
    # The rate limit's token bucket: when it will be full again (µs; `streamer.ratelimit`).
    rate_tat = NumberAttribute(null=True)

    by_user = ConnectionsByUser()


class RequestsByDue(GlobalSecondaryIndex):
    class Meta:
        index_name = schema.REQUESTS_BY_DUE
        projection = AllProjection()

    due_region = UnicodeAttribute(hash_key=True)
    due_at = NumberAttribute(range_key=True)


class RequestsByActiveOwner(GlobalSecondaryIndex):
    class Meta:
        index_name = schema.REQUESTS_BY_ACTIVE_OWNER
        projection = KeysOnlyProjection()

    active_owner = UnicodeAttribute(hash_key=True)


class RequestItem(Model):
    """A client request: its state machine, progress, and outcome."""

    class Meta:
        table_name = "streamer-requests"

    request_key = UnicodeAttribute(hash_key=True)
    owner = UnicodeAttribute()
    request_id = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    action = UnicodeAttribute()
    kind = UnicodeAttribute(default=ASYNC)
    payload = JSONAttribute(default=dict)
    metadata = JSONAttribute(null=True)
    status = UnicodeAttribute()
    # None for a request started over HTTP: it has no owning connection.
    connection_id = UnicodeAttribute(null=True)
    endpoint = UnicodeAttribute(null=True)
    #: The X-Ray trace header of the router invocation that queued it (tracing on only):
    #: the processor continues that trace (`streamer.tracing.continued`).
    trace_header = UnicodeAttribute(null=True)
    origin_region = UnicodeAttribute()
    estimated_duration_ms = NumberAttribute(default=0)
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    progress = NumberAttribute(default=0)
    progress_message = UnicodeAttribute(null=True)
    seq = NumberAttribute(default=0)
    result = JSONAttribute(null=True)
    error = JSONAttribute(null=True)
    attempt = NumberAttribute(default=0)
    max_attempts = NumberAttribute(default=3)
    lease_expires_at = NumberAttribute(null=True)
    retry_after = NumberAttribute(null=True)
    checkpoint = JSONAttribute(null=True)
    cancel_requested = BooleanAttribute(null=True)
    # Only while WAITING: the handler's state, how often to poll, when to give up.
    wait_state = JSONAttribute(null=True)
    poll_interval_ms = NumberAttribute(null=True)
    deadline_at = NumberAttribute(null=True)
    # Polls in a row that failed temporarily (the external system is down): the backoff.
    poll_failures = NumberAttribute(null=True)
    # Present only while the sweeper must move the request on (`keys.sweep_partition`),
    # or while WAITING under the poller's partition (`keys.poll_partition`).
    due_region = UnicodeAttribute(null=True)
    due_at = NumberAttribute(null=True)
    # The owner while an async request has not ended: the per-user cap's index.
    active_owner = UnicodeAttribute(null=True)
    ttl = NumberAttribute()

    by_due = RequestsByDue()
    by_active_owner = RequestsByActiveOwner()

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def snapshot(self) -> dict[str, Any]:
        """The protocol's request snapshot (`status` answers)."""
        snap: dict[str, Any] = {
            "request_id": self.request_id,
            "action": self.action,
            "status": self.status,
            "progress": self.progress,
            "progress_message": self.progress_message or "",
            "created_at": int(self.created_at),
            "updated_at": int(self.updated_at),
        }
        if self.status == COMPLETED:
            snap["result"] = self.result
        elif self.is_terminal:
            snap["error"] = self.error
        return snap


class SubscriptionsByConnection(GlobalSecondaryIndex):
    class Meta:
        index_name = schema.SUBSCRIPTIONS_BY_CONNECTION
        projection = KeysOnlyProjection()

    connection_id = UnicodeAttribute(hash_key=True)


class Subscription(Model):
    """A connection that receives a request's or a topic's messages (besides a request's owner)."""

    class Meta:
        table_name = "streamer-subscriptions"

    request_key = UnicodeAttribute(hash_key=True)
    connection_id = UnicodeAttribute(range_key=True)
    endpoint = UnicodeAttribute(null=True)
    ttl = NumberAttribute(null=True)
    # Only on a topic's retained row (`streamer.topics`): its last notification.
    message = JSONAttribute(null=True)

    by_connection = SubscriptionsByConnection()


def bind_models(
    connections_table: str, requests_table: str, subscriptions_table: str, region: str
) -> None:
    """Point the models at these tables; drops any cached connection.

    The models' connections take their botocore session from `streamer.aws`.
    """
    aws.share_with_pynamodb()
    for model, table in (
        (Connection, connections_table),
        (RequestItem, requests_table),
        (Subscription, subscriptions_table),
    ):
        model.Meta.table_name = table
        model.Meta.region = region
        model._connection = None


__all__ = [
    "ASYNC",
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "PENDING",
    "PROCESSING",
    "RETRYING",
    "SYNC",
    "TERMINAL",
    "WAITING",
    "Connection",
    "RequestItem",
    "Status",
    "Subscription",
    "bind_models",
    "owner_key",
    "request_key",
]
