"""Table layouts, defined once for the runtime models and the Pulumi components.

Plain data with no AWS imports, so the infrastructure code can read it without
pulling in the runtime's dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Index:
    """A global secondary index: name, hash key and optional range key."""

    name: str
    hash_key: str
    range_key: str | None = None
    projection: str = "ALL"
    #: With projection "INCLUDE": the non-key attributes the index carries.
    included: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSchema:
    """Key schema of one table. Key attributes are strings (`S`) unless named in `numeric_keys`."""

    logical_name: str
    hash_key: str
    range_key: str | None = None
    indexes: tuple[Index, ...] = field(default_factory=tuple)
    ttl_attribute: str = "ttl"
    stream_view_type: str | None = None
    numeric_keys: frozenset[str] = frozenset()

    def attribute_type(self, name: str) -> str:
        """DynamoDB scalar type of a key attribute: `N` or `S`."""
        return "N" if name in self.numeric_keys else "S"

    @property
    def key_attributes(self) -> tuple[str, ...]:
        """Every attribute named by the table's or an index's key, once each."""
        names: list[str] = []
        for name in (
            self.hash_key,
            self.range_key,
            *tuple(key for index in self.indexes for key in (index.hash_key, index.range_key)),
        ):
            if name and name not in names:
                names.append(name)
        return tuple(names)


CONNECTIONS_BY_USER = "by_user"
SUBSCRIPTIONS_BY_CONNECTION = "by_connection"
REQUESTS_BY_DUE = "by_due"
REQUESTS_BY_ACTIVE_OWNER = "by_active_owner"

CONNECTIONS = TableSchema(
    logical_name="connections",
    hash_key="connection_id",
    # Only what delivery needs: an index projecting every attribute would be
    # rewritten by each rate-limit count on the connection record.
    indexes=(
        Index(
            CONNECTIONS_BY_USER, hash_key="user_key", projection="INCLUDE", included=("endpoint",)
        ),
    ),
)

# A request's key is its tenant, user and id together ("tenant#user#id"): a
# request id of another tenant or user cannot even be addressed, and client
# ids are idempotency keys scoped to their owner. Each request is its own
# partition key because DynamoDB Streams keeps records of one partition key in
# order: keyed by owner, a user's second request would wait for the first.
REQUESTS = TableSchema(
    logical_name="requests",
    hash_key="request_key",
    # Sparse index for the sweeper: only requests that must move on by a time carry
    # `due_region` (their origin region and shard, `streamer.keys`) and `due_at`
    # (pickup time, lease expiry or retry time).
    # Sparse index of the async requests not yet ended, per owner: counts them
    # for the per-user cap on concurrent requests. While the cap is on, a new
    # request is in this index only, not in the due index: the sweeper finds the
    # ones whose time passed by scanning it (`store.requests.UNKEYED_DUE`), so
    # each request enters and leaves one index, not two (`streamer.keys.watched_by`).
    indexes=(
        # Keys only: a write that changes neither key writes nothing to it (claims
        # aside, no progress persist or finish payload lands here), and what the
        # sweeper acts on it reads from the table.
        Index(REQUESTS_BY_DUE, hash_key="due_region", range_key="due_at", projection="KEYS_ONLY"),
        # The two attributes the sweeper's scan filters on. `cap_due_at` is the
        # request's due time only while this index alone watches it, removed by the
        # write that keys it in the due index: the polls and moves of a request
        # the due index has change nothing here, and neither do a put's later
        # writes within its pickup time (a claim, a progress persist): a write that
        # changes neither them nor the key writes nothing to this index.
        Index(
            REQUESTS_BY_ACTIVE_OWNER,
            hash_key="active_owner",
            projection="INCLUDE",
            included=("cap_due_at", "origin_region"),
        ),
    ),
    stream_view_type="NEW_AND_OLD_IMAGES",
    numeric_keys=frozenset({"due_at"}),
)

SUBSCRIPTIONS = TableSchema(
    logical_name="subscriptions",
    hash_key="request_key",
    range_key="connection_id",
    indexes=(Index(SUBSCRIPTIONS_BY_CONNECTION, hash_key="connection_id", projection="KEYS_ONLY"),),
)

TABLES: tuple[TableSchema, ...] = (CONNECTIONS, REQUESTS, SUBSCRIPTIONS)


def create_table_request(schema: TableSchema, table_name: str) -> dict:
    """Keyword arguments for DynamoDB `CreateTable` (on-demand) from a schema.

    Used where tables are made outside Pulumi: the local stack and tests.
    """

    def key_schema(hash_key: str, range_key: str | None) -> list[dict]:
        keys = [{"AttributeName": hash_key, "KeyType": "HASH"}]
        if range_key:
            keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
        return keys

    request: dict = {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": schema.attribute_type(name)}
            for name in schema.key_attributes
        ],
        "KeySchema": key_schema(schema.hash_key, schema.range_key),
    }
    if schema.indexes:
        request["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index.name,
                "KeySchema": key_schema(index.hash_key, index.range_key),
                "Projection": {"ProjectionType": index.projection}
                | ({"NonKeyAttributes": list(index.included)} if index.included else {}),
            }
            for index in schema.indexes
        ]
    if schema.stream_view_type:
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": schema.stream_view_type,
        }
    return request


def index_of(table: TableSchema, name: str) -> Index:
    """The index of `table` called `name`."""
    return next(index for index in table.indexes if index.name == name)
