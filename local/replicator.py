"""Global tables for the local stack: replicas on separate DynamoDB endpoints that race like AWS's.

DynamoDB global tables in multi-Region eventual consistency (MREC) replicate
each write asynchronously, read from the source replica's stream, and settle
concurrent writes to one item per item by last writer wins ("How DynamoDB
global tables work", Amazon DynamoDB developer guide,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/V2globaltables_HowItWorks.html):
"the modification with the latest internal timestamp" wins, and a
conditional write is checked against the replica it is sent to only. The
prescriptive guidance ("Overview of global tables", key facts about MREC,
https://docs.aws.amazon.com/prescriptive-guidance/latest/dynamodb-global-tables/overview.html)
adds how: every item has a last-write timestamp kept as a private system
attribute, and a replicated write is applied with a condition that its
timestamp is greater than the item's.

`Replicator` does the same between local endpoints (moto's server or
DynamoDB Local, one per region), in a thread:

- it reads every replica's stream (DynamoDB Streams API, NEW_AND_OLD_IMAGES;
  it enables one on a table that has none, as MREC does on every replica);
- a write's timestamp is its stream record's creation time (moto: milliseconds;
  DynamoDB Local: seconds), never below the version it overwrote in its replica;
  equal timestamps are settled by region name;
- the winning version of each item is written to each other replica `lag_s`
  after the replicator saw the write (deletes as deletes); several writes to
  one item within the lag reach the other replicas as one write, as MREC may
  combine them;
- loop prevention: AWS's legacy version (2017.11.29) marked every item with
  `aws:rep:updateregion`, `aws:rep:updatetime` and `aws:rep:deleting`
  ("Global tables: How it works", version 2017.11.29,
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/globaltables_HowItWorks.html);
  the current version (2019.11.21) keeps its timestamp private and adds no
  attribute. So here, as there, items carry nothing extra: the replicator
  remembers each write it applied and recognises its record in the target's
  stream (same key, same image, in the item's stream order), which it never
  replicates again;
- `isolate(region)` cuts a replica off (its writes stay local, others' wait)
  and `reconnect(region)` lets everything pending flow, as MREC replicates
  an isolated replica's writes "when the replica becomes healthy".

Where it is harsher than AWS: a replicated write is a plain put or delete,
not conditional on a private timestamp, so a local write that lands in the
target between the replicator's read and its write is briefly overwritten
by an older version; the replicator sees that write in the stream next and
puts it back everywhere. Replicas must start empty (the replicator does not
copy what a table held before it first read the table's stream).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from local.dynamodb import client
from local.event_source_mapping import REOPEN_ITERATOR

log = logging.getLogger("local.replicator")

#: The stream view every replica needs: the new image to copy, the keys of a delete.
VIEW_TYPE = "NEW_AND_OLD_IMAGES"

Image = dict | None  # an item in AttributeValue form as boto3 gives it; None: deleted


@dataclass(frozen=True, order=True)
class Version:
    """The timestamp last writer wins compares, and the region that wrote (the tie-break)."""

    at: float
    region: str


@dataclass
class _Shard:
    shard_id: str
    iterator: str | None = None
    #: The last record read: an expired iterator is reopened after it, never from the start.
    last_sequence: str | None = None
    closed: bool = False


@dataclass
class _Stream:
    arn: str
    shards: dict[str, _Shard] = field(default_factory=dict)
    next_discovery: float = 0.0


def _canonical(keys: dict) -> str:
    return json.dumps(keys, sort_keys=True, default=lambda value: bytes(value).hex())


def _comparable(image: Image) -> str | None:
    """An image in a form where equal items compare equal: set members in any order."""

    def value(attribute: dict) -> object:
        ((kind, inner),) = attribute.items()
        if kind in ("SS", "NS", "BS"):
            return {kind: sorted(inner)}
        if kind == "M":
            return {kind: {name: value(item) for name, item in inner.items()}}
        if kind == "L":
            return {kind: [value(item) for item in inner]}
        return attribute

    if image is None:
        return None
    return _canonical({name: value(attribute) for name, attribute in image.items()})


def _record_time(record: dict) -> float:
    created = record["dynamodb"]["ApproximateCreationDateTime"]
    return created.timestamp() if isinstance(created, datetime) else float(created)


class Replicator:
    """Replicates `tables` among the regions' endpoints, last writer wins, after `lag_s`."""

    def __init__(
        self,
        endpoints: Mapping[str, str],
        tables: Sequence[str],
        *,
        lag_s: float = 0.0,
        poll_interval_s: float = 0.1,
        shard_discovery_s: float = 1.0,
    ) -> None:
        if len(endpoints) < 2:
            raise ValueError("replication needs at least two regions")
        self.regions = tuple(endpoints)
        self.tables = tuple(tables)
        self._lag_s = lag_s
        self._poll_interval_s = poll_interval_s
        self._shard_discovery_s = shard_discovery_s
        self._dynamodb = {r: client("dynamodb", url, r) for r, url in endpoints.items()}
        self._streams_api = {r: client("dynamodbstreams", url, r) for r, url in endpoints.items()}
        self._streams: dict[tuple[str, str], _Stream] = {}
        # Per (region, table, key): the version the replica holds, as its stream showed it.
        self._current: dict[tuple[str, str, str], tuple[Version, Image]] = {}
        # Per (table, key): the winning version so far, its image and its key attributes.
        self._winner: dict[tuple[str, str], tuple[Version, Image]] = {}
        self._keys: dict[tuple[str, str], dict] = {}
        # Writes this replicator applied whose stream record has not come back yet.
        self._echoes: dict[tuple[str, str, str], deque[tuple[Version, Image]]] = {}
        # When the winner is due in a replica that does not hold it.
        self._due: dict[tuple[str, str, str], float] = {}
        self._isolated: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- control --------------------------------------------------------------------

    @property
    def lag_s(self) -> float:
        return self._lag_s

    @lag_s.setter
    def lag_s(self, seconds: float) -> None:
        with self._lock:
            self._lag_s = seconds

    def isolate(self, region: str) -> None:
        """Cut `region`'s replica off: nothing read from it or written to it until reconnected."""
        with self._lock:
            self._isolated.add(self._known(region))

    def reconnect(self, region: str) -> None:
        with self._lock:
            self._isolated.discard(self._known(region))

    @property
    def isolated(self) -> tuple[str, ...]:
        """The regions cut off now, in the order of `regions`."""
        with self._lock:
            return tuple(r for r in self.regions if r in self._isolated)

    def start(self) -> None:
        for region in self.regions:
            for table in self.tables:
                self._streams[(region, table)] = _Stream(self._stream_arn(region, table))
        self._thread = threading.Thread(target=self._run, name="replicator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def converged(self) -> bool:
        """Whether every write seen so far is in every replica: none in flight, none cut off."""
        with self._lock:
            return not self._due and not any(self._echoes.values()) and not self._isolated

    def _known(self, region: str) -> str:
        if region not in self.regions:
            raise ValueError(f"not a replicated region: {region!r}")
        return region

    def _stream_arn(self, region: str, table: str) -> str:
        """The table's stream, enabled if it has none: MREC replicates through streams."""
        dynamodb = self._dynamodb[region]
        description = dynamodb.describe_table(TableName=table)["Table"]
        specification = description.get("StreamSpecification") or {}
        if specification.get("StreamEnabled"):
            if specification.get("StreamViewType") != VIEW_TYPE:
                raise ValueError(f"{region}/{table}: a replica's stream must be {VIEW_TYPE}")
            return description["LatestStreamArn"]
        dynamodb.update_table(
            TableName=table,
            StreamSpecification={"StreamEnabled": True, "StreamViewType": VIEW_TYPE},
        )
        return dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]

    # --- the loop -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._pass()
            self._stop.wait(self._poll_interval_s)

    def _pass(self) -> None:
        with self._lock:
            connected = [r for r in self.regions if r not in self._isolated]
        for region in connected:
            try:
                for table in self.tables:
                    for record in self._new_records(region, table):
                        with self._lock:
                            self._observe(region, table, record)
            except (BotoCoreError, ClientError) as error:
                # Its endpoint stopped answering: the other regions go on, this one
                # is read again on the next pass from where it was left.
                log.warning("reading %s's streams failed: %s", region, error)
        self._apply_due(time.time())

    def _new_records(self, region: str, table: str) -> list[dict]:
        api = self._streams_api[region]
        stream = self._streams[(region, table)]
        now = time.monotonic()
        if now >= stream.next_discovery:
            stream.next_discovery = now + self._shard_discovery_s
            description = api.describe_stream(StreamArn=stream.arn)["StreamDescription"]
            for shard in description.get("Shards", []):
                stream.shards.setdefault(shard["ShardId"], _Shard(shard["ShardId"]))
        records: list[dict] = []
        # moto and DynamoDB Local keep one shard per stream; shards are read in
        # the order they were found, which keeps each item's records in order.
        for shard in stream.shards.values():
            if shard.closed:
                continue
            if shard.iterator is None:
                shard.iterator = self._open(api, stream.arn, shard)
            while shard.iterator is not None:
                try:
                    answer = api.get_records(ShardIterator=shard.iterator, Limit=1000)
                except ClientError as error:
                    if error.response["Error"]["Code"] not in REOPEN_ITERATOR:
                        raise
                    shard.iterator = self._open(api, stream.arn, shard)
                    continue
                shard.iterator = answer.get("NextShardIterator")
                records.extend(answer["Records"])
                if not answer["Records"]:
                    break
                shard.last_sequence = answer["Records"][-1]["dynamodb"]["SequenceNumber"]
            shard.closed = shard.iterator is None
        return records

    @staticmethod
    def _open(api: Any, arn: str, shard: _Shard) -> str:
        """An iterator from the shard's start, or just after the last record read."""
        position = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": shard.last_sequence}
            if shard.last_sequence
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        answer = api.get_shard_iterator(StreamArn=arn, ShardId=shard.shard_id, **position)
        return answer["ShardIterator"]

    def _observe(self, region: str, table: str, record: dict) -> None:
        """One stream record of `region`'s replica: the replicator's own write, or a new one."""
        change = record["dynamodb"]
        keys = change["Keys"]
        key = _canonical(keys)
        image = None if record["eventName"] == "REMOVE" else change["NewImage"]
        slot = (region, table, key)
        echoes = self._echoes.get(slot)
        if echoes and _comparable(echoes[0][1]) == _comparable(image):
            self._current[slot] = echoes.popleft()
        else:
            held = self._current.get(slot)
            at = _record_time(record)
            if held is not None and at <= held[0].at:
                # Written on top of the version the replica held: causally later.
                at = held[0].at + 1e-6
            version = Version(at, region)
            self._current[slot] = (version, image)
            winner = self._winner.get((table, key))
            if winner is None or version > winner[0]:
                self._winner[(table, key)] = (version, image)
        self._keys[(table, key)] = keys
        self._schedule(table, key)

    def _schedule(self, table: str, key: str) -> None:
        """Make the winner due in every replica that does not hold it and awaits no echo."""
        winner = self._winner.get((table, key))
        if winner is None:
            return
        due = time.time() + self._lag_s
        for region in self.regions:
            slot = (region, table, key)
            if self._echoes.get(slot) or self._holds(slot, winner):
                continue
            self._due.setdefault(slot, due)

    def _holds(self, slot: tuple[str, str, str], winner: tuple[Version, Image]) -> bool:
        held = self._current.get(slot)
        if held is None:
            return winner[1] is None
        if held[0] == winner[0]:
            return True
        if _comparable(held[1]) == _comparable(winner[1]):
            # The same content under another version: nothing to write.
            self._current[slot] = winner
            return True
        return False

    def _apply_due(self, now: float) -> None:
        with self._lock:
            ready = [
                slot
                for slot, due in self._due.items()
                if due <= now and slot[0] not in self._isolated
            ]
            for slot in ready:
                del self._due[slot]
        for slot in ready:
            self._apply(slot)

    def _apply(self, slot: tuple[str, str, str]) -> None:
        region, table, key = slot
        with self._lock:
            winner = self._winner[(table, key)]
            if self._echoes.get(slot) or self._holds(slot, winner):
                return
            keys = self._keys[(table, key)]
        image = winner[1]
        dynamodb = self._dynamodb[region]
        try:
            if image is None:
                answer = dynamodb.delete_item(TableName=table, Key=keys, ReturnValues="ALL_OLD")
            else:
                answer = dynamodb.put_item(TableName=table, Item=image, ReturnValues="ALL_OLD")
        except (BotoCoreError, ClientError) as error:
            log.warning("replicating %s to %s failed, retrying: %s", key, region, error)
            with self._lock:
                self._due.setdefault(slot, time.time() + self._poll_interval_s)
            return
        with self._lock:
            if _comparable(answer.get("Attributes")) == _comparable(image):
                # Nothing changed, so AWS writes no stream record (moto writes one; it is
                # then seen as a local write of the same content, and settles the same way).
                self._current[slot] = winner
            else:
                self._echoes.setdefault(slot, deque()).append(winner)
