"""PynamoDB models of the three tables, keyed as `streamer.schema` says.

Statuses and their allowed transitions are defined in `streamer.transitions`,
keys in `streamer.keys`; both are re-exported here for the modules that read
requests.

Table names come from configuration at run time (`bind_models`), not at
import, so tests and the local stack can point them anywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.indexes import (
    GlobalSecondaryIndex,
    IncludeProjection,
    KeysOnlyProjection,
)
from pynamodb.models import Model

from streamer import aws, schema
from streamer.keys import owner_key, request_key
from streamer.regions import home_region
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

#: The format of the items this code writes (docs/deploying.md, "Item formats across a
#: deploy"). Every write stamps it in `item_format`; an item without one was written by a
#: release before formats were numbered (format 1, commit d697912).
ITEM_FORMAT = 2
#: The oldest format this code reads: the previous release's, which runs beside it while
#: a deploy shifts traffic.
OLDEST_READ_FORMAT = 1
UNNUMBERED_FORMAT = 1


class Versioned(Model):
    """A model whose every write stamps the format of the code that made it.

    Reading ignores attributes the model does not declare and leaves an
    undeclared or missing one at its default (PynamoDB's `_container_deserialize`
    reads only the model's own attributes, with no null check), so an item of the
    next or the previous format parses; what each format may leave out is
    declared `null=True` or with a default.
    """

    item_format = NumberAttribute(null=True)

    def save(self, condition: Any = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """PutItem, stamped: a put replaces the whole item, so it carries this code's format.

        https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_PutItem.html
        """
        self.item_format = ITEM_FORMAT
        return super().save(condition, *args, **kwargs)

    def update(self, actions: list[Any], condition: Any = None, *args: Any, **kwargs: Any) -> Any:
        """UpdateItem, stamped: the item was last written by this code's format."""
        stamped = [*actions, type(self).item_format.set(ITEM_FORMAT)]
        return super().update(stamped, condition, *args, **kwargs)

    @property
    def format(self) -> int:
        """The format of the code that last wrote this item (1: before formats were numbered)."""
        return UNNUMBERED_FORMAT if self.item_format is None else int(self.item_format)


class ConnectionsByUser(GlobalSecondaryIndex):
    class Meta:
        index_name = schema.CONNECTIONS_BY_USER
        projection = IncludeProjection(["endpoint"])

    user_key = UnicodeAttribute(hash_key=True)


class Connection(Versioned):
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
        projection = KeysOnlyProjection()

    due_region = UnicodeAttribute(hash_key=True)
    due_at = NumberAttribute(range_key=True)


_ACTIVE_OWNER = schema.index_of(schema.REQUESTS, schema.REQUESTS_BY_ACTIVE_OWNER)


class RequestsByActiveOwner(GlobalSecondaryIndex):
    class Meta:
        index_name = schema.REQUESTS_BY_ACTIVE_OWNER
        projection = IncludeProjection(list(_ACTIVE_OWNER.included))

    active_owner = UnicodeAttribute(hash_key=True)


class RequestItem(Versioned):
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
    # The request's shard of the due index (`keys.due_shard`); absent: shard 0.
    due_shard = NumberAttribute(null=True)
    # The owner while an async request has not ended: the per-user cap's index.
    active_owner = UnicodeAttribute(null=True)
    # `due_at` while the cap's index alone would find the request if it stalled (it is
    # not keyed in the due index): what the sweeper's scan of that index reads
    # (`keys.watched_by`). Absent once a write keys it, and on a request stored before.
    cap_due_at = NumberAttribute(null=True)
    #: Bumped by each takeover of the request by another region (`streamer.regions`);
    #: absent: 0. Every conditional write checks the epoch its writer read
    #: (`streamer.store.conditions`). A reader of format 2 before this attribute
    #: ignores it, and an item without it is at epoch 0.
    epoch = NumberAttribute(null=True)
    ttl = NumberAttribute()

    by_due = RequestsByDue()
    by_active_owner = RequestsByActiveOwner()

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def fence_epoch(self) -> int:
        """The epoch this item was read at (0 for one never taken over)."""
        return int(self.epoch or 0)

    @property
    def watched_by_cap(self) -> bool:
        """Whether only the per-user cap's index would find the request if it stalled: it is
        in that index and not (yet) in the due index (`keys.watched_by`)."""
        return self.cap_due_at is not None and self.due_region is None

    @property
    def shard(self) -> int:
        """The due-index shard the request is keyed under (0 for one stored before sharding)."""
        return int(self.due_shard or 0)

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


class Subscription(Versioned):
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


@dataclass(frozen=True)
class Regions:
    """The regions of the deployment, seen from this function's own (`streamer.regions`)."""

    own: str
    all: tuple[str, ...]
    #: DynamoDB endpoint URLs of the regions whose endpoint is not the SDK's default.
    endpoints: Mapping[str, str] = field(default_factory=dict)


_regions = Regions(own="us-east-1", all=("us-east-1",))
M = TypeVar("M", bound=Model)
#: The request and subscription models of each other region's tables, made once per binding.
_remote: dict[tuple[type, str], type] = {}
_remote_lock = threading.Lock()


def bind_models(
    connections_table: str,
    requests_table: str,
    subscriptions_table: str,
    region: str,
    *,
    regions: Sequence[str] = (),
    endpoints: Mapping[str, str] | None = None,
) -> None:
    """Point the models at these tables; drops any cached connection.

    The models' connections take their botocore session from `streamer.aws`.
    `regions` (default: `region` alone) and `endpoints` say where the
    requests table of each region of the deployment is (`requests_in`).
    """
    global _regions
    aws.share_with_pynamodb()
    for model, table in (
        (Connection, connections_table),
        (RequestItem, requests_table),
        (Subscription, subscriptions_table),
    ):
        model.Meta.table_name = table
        model.Meta.region = region
        model._connection = None
    with _remote_lock:
        _regions = Regions(
            own=region, all=tuple(regions) or (region,), endpoints=dict(endpoints or {})
        )
        _remote.clear()


def bound_regions() -> Regions:
    """The regions the models were bound with."""
    return _regions


def decider_of(owner: str) -> str:
    """The region whose table decides the requests of `owner`: its home (`regions.home_region`).

    With one region, that region, without hashing: a single-region deployment
    pays nothing for the rule.
    """
    bound = _regions
    if len(bound.all) == 1:
        return bound.own
    return home_region(owner, bound.all)


def on_connections_table(model: type[M]) -> type[M]:
    """`model`, a record kept in the connections table besides connections (circuit
    counts, heartbeats), bound to the table and region `Connection` is bound to."""
    table, region = Connection.Meta.table_name, getattr(Connection.Meta, "region", None)
    meta = model.Meta
    if meta.table_name != table or getattr(meta, "region", None) != region:
        meta.table_name = table
        meta.region = region  # type: ignore[attr-defined]
        model._connection = None
    return model


def requests_in(region: str) -> type[RequestItem]:
    """The request model whose calls go to `region`'s replica of the requests table."""
    return _model_in(RequestItem, region)


def subscriptions_in(region: str) -> type[Subscription]:
    """The subscription model whose calls go to `region`'s replica of the subscriptions table."""
    return _model_in(Subscription, region)


def _model_in(base: type[M], region: str) -> type[M]:
    """`base`, or the subclass of it whose calls go to `region`'s replica of its table.

    The own region's is `base`. Another's is a subclass made once per binding,
    on the same table name (a global table has one name in every region) with
    that region and, if configured, its endpoint: PynamoDB binds one connection
    per model class, and `streamer.aws` gives each (budget, region, endpoint)
    one client from the process's session.
    """
    bound = _regions
    if region == bound.own:
        return base
    with _remote_lock:
        model = _remote.get((base, region))
        if model is None:
            meta = {"table_name": base.Meta.table_name, "region": region}
            if region in bound.endpoints:
                meta["host"] = bound.endpoints[region]
            suffix = "".join(c if c.isalnum() else "_" for c in region)
            # Its own connection: PynamoDB keeps one in `_connection`, which a subclass
            # would otherwise inherit from `base` once that one has made its own.
            body = {"Meta": type("Meta", (), meta), "_connection": None, "__module__": __name__}
            model = type(f"{base.__name__}In_{suffix}", (base,), body)
            _remote[(base, region)] = model
        return model


__all__ = [
    "ASYNC",
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "ITEM_FORMAT",
    "OLDEST_READ_FORMAT",
    "PENDING",
    "PROCESSING",
    "RETRYING",
    "SYNC",
    "TERMINAL",
    "UNNUMBERED_FORMAT",
    "WAITING",
    "Connection",
    "RequestItem",
    "Status",
    "Subscription",
    "Versioned",
    "bind_models",
    "bound_regions",
    "decider_of",
    "on_connections_table",
    "owner_key",
    "request_key",
    "requests_in",
    "subscriptions_in",
]
