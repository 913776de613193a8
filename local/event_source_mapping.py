"""The DynamoDB Streams event source mapping: a thread that polls shards and invokes a function.

It discovers shards (and the new ones a stream opens later), reads each from
its start, a child only after its parent is read to the end, so an item's
records enter their lane in stream order. Batching and retries are
`streams.Lane`'s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from local import streams
from local.functions import THROTTLED, FunctionError, LambdaFunction
from streamer.catalog import REQUESTS_STREAM_MAPPING

log = logging.getLogger("local.streams")

# Errors after which a shard is read again from a fresh iterator: iterators
# expire after 15 minutes, and DynamoDB Local sometimes rejects an iterator it
# handed out on an empty shard once the first record arrives.
REOPEN_ITERATOR = {"ExpiredIteratorException", "TrimmedDataAccessException"}
#: How often an idle shard is read: "Lambda polls shards in your DynamoDB stream for
#: records at a base rate of 4 times per second. When records are available, Lambda
#: invokes your function and waits for the result. If processing succeeds, Lambda resumes
#: polling until it receives more records" (Lambda developer guide, "Using AWS Lambda with
#: Amazon DynamoDB", polling and batching streams). A shorter interval would pick requests
#: up sooner than AWS does.
LAMBDA_POLL_INTERVAL_S = 0.25


@dataclass(frozen=True)
class MappingConfig:
    """The mapping's settings: Lambda's names, with local polling defaults."""

    policy: streams.BatchPolicy = field(default_factory=streams.BatchPolicy)
    parallelization_factor: int = REQUESTS_STREAM_MAPPING.parallelization_factor
    poll_interval_s: float = LAMBDA_POLL_INTERVAL_S
    shard_discovery_s: float = 1.0
    records_per_read: int = 1000
    #: Lambda event filter patterns; a record that matches none is dropped, as on AWS.
    filters: tuple[dict, ...] = ()


@dataclass
class _Shard:
    shard_id: str
    parent_id: str | None
    iterator: str | None = None
    last_sequence: str | None = None
    read_to_end: bool = False
    next_read_at: float = 0.0


class EventSourceMapping:
    """Polls one stream and invokes `function` with Lambda-shaped batches until stopped.

    `copies` says how many times a record is handed on (fault injection of
    redelivery; once by default). `set_enabled(False)` stops invoking, as
    disabling a mapping does: records wait, and go out in order once enabled.
    """

    def __init__(
        self,
        streams_client,
        stream_arn: str,
        function: LambdaFunction,
        config: MappingConfig,
        copies: Callable[[dict], int] | None = None,
    ) -> None:
        self._client = streams_client
        self._stream_arn = stream_arn
        self._function = function
        self._config = config
        self._copies = copies or (lambda record: 1)
        self._enabled = True
        # Every key exists from the start: `stats` may read them from another thread.
        self._counts: Counter[str] = Counter(
            invocations=0,
            function_errors=0,
            batch_item_failures=0,
            records_discarded=0,
            records_expired=0,
            throttles=0,
        )
        self._lanes = [streams.Lane(config.policy) for _ in range(config.parallelization_factor)]
        self._shards: dict[str, _Shard] = {}
        self._partition_key: str | None = None
        self._next_discovery = 0.0
        self._in_flight: dict[int, tuple[list[dict], Future]] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-stream-poller")

    def start(self) -> None:
        self._thread.start()

    def set_enabled(self, enabled: bool) -> None:
        self._enabled = enabled
        self._wake.set()

    def stats(self) -> dict:
        """Counters since start, and what is waiting: for tests and fault injection."""
        return {
            **self._counts,
            "enabled": self._enabled,
            "records_waiting": sum(len(lane) for lane in self._lanes),
            "batches_in_flight": len(self._in_flight),
        }

    def stop(self) -> None:
        """Stop polling, let invocations in flight finish, and end the thread."""
        self._stopping.set()
        self._wake.set()
        self._thread.join()

    # -- the polling loop ------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= self._next_discovery:
                self._discover_shards(now)
            for shard in self._readable_shards(now):
                self._read(shard, now)
            self._settle_finished(time.monotonic())
            self._invoke_ready(time.monotonic())
            self._wake.wait(self._idle_s(time.monotonic()))
            self._wake.clear()
        for _, future in list(self._in_flight.values()):
            future.exception()
        self._settle_finished(time.monotonic())

    def _idle_s(self, now: float) -> float:
        """How long to wait before the next pass: until a shard's next read, the next
        discovery, or a lane's batching window or retry backoff is due, and no longer than
        a poll interval. Finished invocations wake it sooner."""
        due = [self._next_discovery, now + self._config.poll_interval_s]
        due += [s.next_read_at for s in self._shards_to_read()]
        if self._enabled:
            due += [d for lane in self._lanes if (d := lane.next_due()) is not None]
        return max(0.0, min(due) - now)

    def _discover_shards(self, now: float) -> None:
        self._next_discovery = now + self._config.shard_discovery_s
        try:
            found = []
            start: dict = {}
            while True:
                description = self._client.describe_stream(StreamArn=self._stream_arn, **start)[
                    "StreamDescription"
                ]
                found.extend(description.get("Shards", []))
                last = description.get("LastEvaluatedShardId")
                if not last:
                    break
                start = {"ExclusiveStartShardId": last}
        except (BotoCoreError, ClientError) as error:
            log.warning("describing %s failed: %s", self._stream_arn, error)
            return
        self._partition_key = next(
            k["AttributeName"] for k in description["KeySchema"] if k["KeyType"] == "HASH"
        )
        for shard in found:
            shard_id = shard["ShardId"]
            if shard_id not in self._shards:
                log.info("new shard %s", shard_id)
                self._shards[shard_id] = _Shard(shard_id, shard.get("ParentShardId"))

    def _shards_to_read(self) -> list[_Shard]:
        """Shards not read to their end whose parent (if any) is."""

        def parent_done(shard: _Shard) -> bool:
            parent = self._shards.get(shard.parent_id) if shard.parent_id else None
            return parent is None or parent.read_to_end

        return [s for s in self._shards.values() if not s.read_to_end and parent_done(s)]

    def _readable_shards(self, now: float) -> list[_Shard]:
        return [s for s in self._shards_to_read() if s.next_read_at <= now]

    def _read(self, shard: _Shard, now: float) -> None:
        try:
            if shard.iterator is None:
                shard.iterator = self._shard_iterator(shard)
            answer = self._client.get_records(
                ShardIterator=shard.iterator, Limit=self._config.records_per_read
            )
        except ClientError as error:
            if error.response["Error"]["Code"] in REOPEN_ITERATOR:
                shard.iterator = None
            else:
                log.warning("reading shard %s failed: %s", shard.shard_id, error)
            shard.next_read_at = time.monotonic() + self._config.poll_interval_s
            return
        except BotoCoreError as error:
            log.warning("reading shard %s failed: %s", shard.shard_id, error)
            shard.next_read_at = time.monotonic() + self._config.poll_interval_s
            return
        records = answer.get("Records", [])
        for record in records:
            converted = streams.lambda_record(record, self._stream_arn)
            shard.last_sequence = streams.sequence_number(converted)
            if self._config.filters and not any(
                streams.matches_filter(f, converted) for f in self._config.filters
            ):
                continue
            lane = streams.lane_for(converted, self._partition_key or "", len(self._lanes))
            for _ in range(self._copies(converted)):
                self._lanes[lane].add(converted, now)
        shard.iterator = answer.get("NextShardIterator")
        if shard.iterator is None:
            log.info("shard %s read to its end", shard.shard_id)
            shard.read_to_end = True
        # A read that found records may have left more: read again at once. Otherwise
        # wait an interval from the read's end, so slow reads do not run back to back.
        shard.next_read_at = now if records else time.monotonic() + self._config.poll_interval_s

    def _shard_iterator(self, shard: _Shard) -> str:
        if shard.last_sequence is None:
            position = {"ShardIteratorType": "TRIM_HORIZON"}
        else:
            position = {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "SequenceNumber": shard.last_sequence,
            }
        return self._client.get_shard_iterator(
            StreamArn=self._stream_arn, ShardId=shard.shard_id, **position
        )["ShardIterator"]

    # -- invocations -----------------------------------------------------------

    def _invoke_ready(self, now: float) -> None:
        if not self._enabled:
            return
        for index, lane in enumerate(self._lanes):
            for record in lane.expire(now):
                self._counts["records_expired"] += 1
                age = self._config.policy.maximum_record_age_s
                self._discard(record, f"older than the maximum record age, {age:g} s")
            batch = lane.take(now)
            if batch is None:
                continue
            future = self._function.submit({"Records": batch})
            future.add_done_callback(lambda _: self._wake.set())
            self._in_flight[index] = (batch, future)

    def _settle_finished(self, now: float) -> None:
        for index, (batch, future) in list(self._in_flight.items()):
            if not future.done():
                continue
            del self._in_flight[index]
            error = future.exception()
            if isinstance(error, FunctionError) and error.error_type == THROTTLED:
                # Over the function's concurrency limit: the batch waits and goes again.
                self._counts["throttles"] += 1
                self._lanes[index].throttled(now)
                continue
            answer = None if error else future.result()
            self._count(answer, error)
            retry_at = streams.retry_from(batch, answer, failed=error is not None)
            if retry_at is not None:
                log.warning(
                    "batch of %d on lane %d: retrying from %s (%s)",
                    len(batch),
                    index,
                    streams.sequence_number(batch[retry_at]),
                    error or "batchItemFailures",
                )
            settled = self._lanes[index].settle(retry_at, now, function_error=error is not None)
            for record in settled:
                retries = self._config.policy.maximum_retry_attempts
                self._discard(record, f"after {retries} retries")

    def _discard(self, record: dict, why: str) -> None:
        """Give up on a record, as Lambda sends it to the on-failure destination."""
        self._counts["records_discarded"] += 1
        log.error(
            "discarding record %s (%s) %s",
            streams.sequence_number(record),
            record["eventName"],
            why,
        )

    def _count(self, answer: object, error: BaseException | None) -> None:
        self._counts["invocations"] += 1
        if error is not None:
            self._counts["function_errors"] += 1
        elif isinstance(answer, dict) and isinstance(answer.get("batchItemFailures"), list):
            self._counts["batch_item_failures"] += len(answer["batchItemFailures"])
