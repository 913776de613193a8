"""Each region's sweeper heartbeat: one item per region in the connections table.

Keys are `heartbeat#{region}`. The connections table is a global table, so
every region reads every other region's heartbeat in its own replica (a
heartbeat seen late only delays a takeover: `regions.recovery_bound_s` counts
the replication lag). The item is kept out of every index it could land in:
it has no `user_key` (the table's by-user index) and it is not in the requests
table, whose due index the sweepers read and whose stream every processor
reads. No API Gateway connection id contains `#`, so no connection collides.
"""

from __future__ import annotations

from collections.abc import Sequence

from pynamodb.attributes import NumberAttribute, UnicodeAttribute

from streamer.models import Versioned, on_connections_table
from streamer.store.errors import guard

PREFIX = "heartbeat#"


class Heartbeat(Versioned):
    """When a region's sweeper last ran."""

    class Meta:
        table_name = "streamer-connections"

    key = UnicodeAttribute(hash_key=True, attr_name="connection_id")
    region = UnicodeAttribute()
    #: The sweeper run's time (ms since the epoch).
    beat_at = NumberAttribute()


def heartbeat_key(region: str) -> str:
    return f"{PREFIX}{region}"


def _model() -> type[Heartbeat]:
    """The model, on the table and region the connections model was bound to."""
    return on_connections_table(Heartbeat)


def beat(region: str, now_ms: int) -> None:
    """Record that `region`'s sweeper runs at `now_ms` (an unconditional put in its replica)."""
    model = _model()
    guard(lambda: model(heartbeat_key(region), region=region, beat_at=now_ms).save())


def last_beats(regions: Sequence[str]) -> dict[str, float]:
    """The last heartbeat of each of `regions` seen in this replica, in seconds; a region
    never seen is left out (`regions.heartbeat_stale` calls it stale)."""
    model = _model()
    keys = [heartbeat_key(region) for region in regions]
    found = guard(lambda: list(model.batch_get(keys)))
    return {item.region: int(item.beat_at) / 1000 for item in found}
