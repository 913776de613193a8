"""Circuit breaker items in the connections table: one state item and two count items per action.

Keys start with `circuit#`, which no API Gateway connection id can (they are
base64-like, without `#`), and carry no `user_key`, so they stay out of the
table's by-user index:

- `circuit#{action}`: the circuit's `epoch`, `open_until` and `trials`
  (`streamer.circuit.CircuitState`), changed only by conditional writes when
  the circuit opens, takes a trial or closes: a few writes per outage.
- `circuit#{action}#{epoch}#{bucket}`: `calls` and `failures` of one window
  long bucket, by atomic ADD. They expire (`ttl`) two windows after their bucket.
  With `runtime.circuitCountShards` above 1, a bucket's counts are spread over
  that many items, `circuit#{action}#{epoch}#{bucket}#{shard}` (shard 0 without
  the suffix, the key an unsharded release writes), and a read adds them up.

Why not a hot key: written per request, one count item would take every
write of the action (10k req/s is ten times the 1,000 write units a second a
single partition serves, and reads are capped at 3,000 read units a second:
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/warm-throughput-scenarios.html).
`streamer.breaker` adds up each instance's counts and writes them at most once
a second, so an item takes one write a second per running Lambda instance
that adds to it, whatever the request rate: 1,000 instances (the default
concurrency quota of a region) are as many writes a second as one partition
key value takes, so past that the counts need shards, each instance adding to
one. Each instance also reads the state and both buckets' items of an action
it uses at most once a second (eventually consistent, half a read unit each):
an item takes half a read unit a second per instance, within a key value's
3,000 up to 6,000 instances.
"""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute

from streamer.circuit import CircuitState, Counts, TrialSlot
from streamer.models import Versioned, on_connections_table
from streamer.store.errors import conditional, guard

PREFIX = "circuit#"


class CircuitRecord(Versioned):
    """A circuit's state or one bucket's counts (which attributes are set says which)."""

    class Meta:
        table_name = "streamer-connections"

    key = UnicodeAttribute(hash_key=True, attr_name="connection_id")
    epoch = NumberAttribute(null=True)
    open_until = NumberAttribute(null=True)
    trials = NumberAttribute(null=True)
    calls = NumberAttribute(null=True)
    failures = NumberAttribute(null=True)
    ttl = NumberAttribute(null=True)


def state_key(action: str) -> str:
    return f"{PREFIX}{action}"


def counts_key(action: str, epoch: int, bucket: int, shard: int = 0) -> str:
    """A bucket's count item; shard 0's key is the one an unsharded release writes."""
    key = f"{PREFIX}{action}#{epoch}#{bucket}"
    return f"{key}#{shard}" if shard else key


def _model() -> type[CircuitRecord]:
    """The model, on the table and region the connections model was bound to."""
    return on_connections_table(CircuitRecord)


def _state(record: CircuitRecord | None) -> CircuitState:
    if record is None:
        return CircuitState()
    return CircuitState(
        epoch=int(record.epoch or 0),
        open_until=None if record.open_until is None else int(record.open_until),
        trials=int(record.trials or 0),
    )


def _counts(record: CircuitRecord | None) -> Counts:
    if record is None:
        return Counts()
    return Counts(int(record.calls or 0), int(record.failures or 0))


def read(
    action: str, epoch: int, bucket: int, shards: int = 1
) -> tuple[CircuitState, Counts, Counts]:
    """The circuit's state and its counts of `bucket` and the one before, each summed over
    its `shards` items, in one BatchGetItem.

    The counts are read under `epoch` (the caller's last known); if the state
    shows a newer one, they are read again under it.
    """
    model = _model()

    def get(epoch: int) -> dict[str, CircuitRecord]:
        keys = [state_key(action)]
        for shard in range(shards):
            keys.append(counts_key(action, epoch, bucket, shard))
            keys.append(counts_key(action, epoch, bucket - 1, shard))
        return {record.key: record for record in model.batch_get(keys)}

    def summed(records: dict[str, CircuitRecord], epoch: int, bucket: int) -> Counts:
        total = Counts()
        for shard in range(shards):
            total = total + _counts(records.get(counts_key(action, epoch, bucket, shard)))
        return total

    records = guard(lambda: get(epoch))
    state = _state(records.get(state_key(action)))
    if state.epoch != epoch:
        records = guard(lambda: get(state.epoch))
        state = _state(records.get(state_key(action)))
    return (
        state,
        summed(records, state.epoch, bucket),
        summed(records, state.epoch, bucket - 1),
    )


def add(action: str, epoch: int, bucket: int, counts: Counts, ttl: int, shard: int = 0) -> Counts:
    """Add `counts` to one of a bucket's items (made by the first ADD); that item's totals
    after it.

    The totals are every instance's that adds to the item, as the UpdateItem returns
    them (PynamoDB's `update` asks for ALL_NEW and reads the item from the answer):
    with one item a bucket, the bucket's.
    """
    record = _model()(counts_key(action, epoch, bucket, shard))
    guard(
        lambda: record.update(
            actions=[
                CircuitRecord.calls.add(int(counts.calls)),
                CircuitRecord.failures.add(int(counts.failures)),
                CircuitRecord.ttl.set(ttl),
            ]
        )
    )
    return _counts(record)


def open_circuit(action: str, read: CircuitState, open_until: int) -> bool:
    """Open a closed circuit whose counts tripped; False if another instance moved it first."""
    record = _model()(state_key(action))
    same_epoch = (
        CircuitRecord.epoch.does_not_exist()
        if read.epoch == 0
        else CircuitRecord.epoch == read.epoch
    )
    return conditional(
        lambda: record.update(
            actions=[CircuitRecord.open_until.set(open_until), CircuitRecord.trials.set(0)],
            condition=CircuitRecord.open_until.does_not_exist() & same_epoch,
        )
    )


def take_trial(action: str, read: CircuitState, slot: TrialSlot, now: int) -> bool:
    """Take one trial slot of a half-open circuit; False if it changed since `read`."""
    record = _model()(state_key(action))
    if slot.restart:
        actions = [CircuitRecord.open_until.set(now), CircuitRecord.trials.set(1)]
    else:
        actions = [CircuitRecord.trials.set(slot.trials_read + 1)]
    unchanged = (CircuitRecord.open_until == read.open_until) & (
        CircuitRecord.trials == slot.trials_read
    )
    return conditional(lambda: record.update(actions=actions, condition=unchanged))


def close_circuit(action: str, read: CircuitState, now: int) -> bool:
    """A trial succeeded: close, counting from `now` under a new epoch."""
    record = _model()(state_key(action))
    return conditional(
        lambda: record.update(
            actions=[
                CircuitRecord.open_until.remove(),
                CircuitRecord.trials.set(0),
                CircuitRecord.epoch.set(now),
            ],
            condition=CircuitRecord.open_until == read.open_until,
        )
    )


def reopen_circuit(action: str, read: CircuitState, open_until: int) -> bool:
    """A trial failed: open again for an open time."""
    record = _model()(state_key(action))
    return conditional(
        lambda: record.update(
            actions=[CircuitRecord.open_until.set(open_until), CircuitRecord.trials.set(0)],
            condition=CircuitRecord.open_until == read.open_until,
        )
    )
