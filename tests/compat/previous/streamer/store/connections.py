"""The connections table: open WebSocket connections and their rate-limit buckets."""

from __future__ import annotations

from streamer.keys import owner_key
from streamer.models import Connection, Subscription
from streamer.store.errors import conditional, get_or_none, guard


def save_connection(connection: Connection) -> bool:
    """Store a new connection; False if one with this id exists already."""
    return conditional(lambda: connection.save(condition=Connection.connection_id.does_not_exist()))


def get_connection(connection_id: str, *, consistent: bool = False) -> Connection | None:
    return guard(lambda: get_or_none(Connection, connection_id, consistent=consistent))


def touch_connection(connection_id: str, now_ms: int, ttl: int) -> bool:
    """Refresh `last_seen` and the expiry of an existing connection record."""
    connection = Connection(connection_id=connection_id)
    return conditional(
        lambda: connection.update(
            actions=[Connection.last_seen.set(now_ms), Connection.ttl.set(ttl)],
            condition=Connection.connection_id.exists(),
        )
    )


def refill_bucket(connection_id: str, now_us: int, interval_us: int) -> bool:
    """Take a token of a full rate-limit bucket (`rate_tat` before `now_us`, or none yet).

    See `streamer.ratelimit` (times in microseconds). False if the connection
    has no record or its bucket is not full.
    """
    connection = Connection(connection_id=connection_id)
    return conditional(
        lambda: connection.update(
            actions=[Connection.rate_tat.set(now_us + interval_us)],
            condition=Connection.connection_id.exists()
            & (Connection.rate_tat.does_not_exist() | (Connection.rate_tat < now_us)),
        )
    )


def take_token(connection_id: str, now_us: int, interval_us: int, tolerance_us: int) -> int | None:
    """Take a token of a rate-limit bucket that is not full but not empty; its new `rate_tat`.

    See `streamer.ratelimit` (times in microseconds). None if the bucket is
    full, empty, or missing.
    """
    connection = Connection(connection_id=connection_id)
    taken = conditional(
        lambda: connection.update(
            actions=[Connection.rate_tat.add(interval_us)],
            condition=Connection.rate_tat.between(now_us, now_us + tolerance_us),
        )
    )
    return int(connection.rate_tat) if taken else None


def forget_connection(connection_id: str) -> None:
    """Delete a connection and every subscription it holds (idempotent)."""

    def delete() -> None:
        Connection(connection_id=connection_id).delete()
        for key in Subscription.by_connection.query(connection_id):
            Subscription(request_key=key.request_key, connection_id=connection_id).delete()

    guard(delete)


def connections_of_user(tenant_id: str, user_id: str) -> list[Connection]:
    """Every open connection of one user (the connections table's by_user index)."""
    user_key = owner_key(tenant_id, user_id)
    return guard(lambda: list(Connection.by_user.query(user_key)))
