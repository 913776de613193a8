"""Lambda's DynamoDB Streams event source mapping, as plain data: records, lanes, retries.

`event_source_mapping` does the I/O; this module decides what it sends and
what it does with the answer, the way Lambda does:

- a record reaches the function in Lambda's shape (`stream_record`, which
  `lambda_record` fills from a GetRecords record);
- records of one partition key always go to the same lane, and a lane has at
  most one batch in flight, so an item's records are never reordered
  (ParallelizationFactor);
- a batch goes out when it is full or its oldest record has waited the
  batching window;
- `batchItemFailures` retries from the lowest failed sequence number; a
  function error, or an identifier that is not in the batch, retries it all;
- a function error first splits the batch in two (BisectBatchOnFunctionError),
  which does not count as a retry;
- after `max_retries` retries the batch's remaining records are discarded
  (and logged by the caller), as Lambda discards them to an on-failure
  destination, and so is a record older than the maximum record age.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

#: Which images a stream of each view type carries.
_IMAGES = {
    "KEYS_ONLY": (),
    "NEW_IMAGE": ("NewImage",),
    "OLD_IMAGE": ("OldImage",),
    "NEW_AND_OLD_IMAGES": ("NewImage", "OldImage"),
}


def _raw_attribute(value: dict) -> dict:
    """boto3 parses binary attributes to bytes; Lambda delivers them base64-encoded."""
    ((kind, inner),) = value.items()
    if kind == "B":
        return {"B": base64.b64encode(inner).decode("ascii")}
    if kind == "BS":
        return {"BS": [base64.b64encode(item).decode("ascii") for item in inner]}
    if kind == "M":
        return {"M": {k: _raw_attribute(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_raw_attribute(v) for v in inner]}
    return {kind: inner}


def _raw_image(image: dict) -> dict:
    return {name: _raw_attribute(value) for name, value in image.items()}


def _binary_size(value: str | bytes) -> int:
    return len(value) if isinstance(value, bytes) else len(base64.b64decode(value))


def _number_size(text: str) -> int:
    digits = text.lstrip("-").split("e")[0].split("E")[0].replace(".", "").strip("0")
    return (len(digits) + 1) // 2 + 1


def _value_size(value: dict) -> int:
    """DynamoDB's size of one attribute value ("DynamoDB item sizes and formats",
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        # Leading and trailing zeroes trimmed; one byte per two significant digits, plus one.
        return _number_size(inner)
    if kind == "B":
        return _binary_size(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(item.encode()) for item in inner)
    if kind == "NS":
        return sum(_number_size(item) for item in inner)
    if kind == "BS":
        return sum(_binary_size(item) for item in inner)
    if kind == "L":
        # 3 bytes of overhead, and one byte per element.
        return 3 + sum(_value_size(item) + 1 for item in inner)
    if kind == "M":
        return 3 + sum(len(name.encode()) + _value_size(item) + 1 for name, item in inner.items())
    raise ValueError(f"not a DynamoDB attribute value type: {kind!r}")


def item_size(attributes: dict) -> int:
    """Bytes of a map of attributes as DynamoDB counts them: names plus values."""
    return sum(len(name.encode()) + _value_size(value) for name, value in attributes.items())


def stream_record(
    event_name: str,
    keys: dict,
    *,
    new_image: dict | None = None,
    old_image: dict | None = None,
    sequence_number: str,
    created_s: float,
    region: str,
    event_source_arn: str,
    event_id: str,
    event_version: str = "1.1",
    view_type: str = "NEW_AND_OLD_IMAGES",
    size_bytes: int | None = None,
    user_identity: dict | None = None,
) -> dict:
    """One record of the event Lambda gives a function its DynamoDB stream invokes.

    The shape of "Using AWS Lambda with Amazon DynamoDB" (Lambda developer guide, example
    event). Images in AttributeValue JSON (binary values base64 text, as Lambda sends
    them); the stream's view type decides which images the record carries. The creation
    time is epoch seconds, rounded down to the second as DynamoDB Streams records it
    (`StreamRecord.ApproximateCreationDateTime`). `size_bytes` is the stream's own count
    when known; otherwise the size of the keys and the images carried, by DynamoDB's
    item size rules, which gives the documented example's 26 and 59 bytes.
    """
    images = {"NewImage": new_image, "OldImage": old_image}
    carried = {name: images[name] for name in _IMAGES[view_type] if images[name] is not None}
    if size_bytes is None:
        size_bytes = item_size(keys) + sum(item_size(image) for image in carried.values())
    record = {
        "eventID": event_id,
        "eventName": event_name,
        "eventVersion": event_version,
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": {
            "ApproximateCreationDateTime": float(math.floor(created_s)),
            "Keys": keys,
            **carried,
            "SequenceNumber": sequence_number,
            "SizeBytes": size_bytes,
            "StreamViewType": view_type,
        },
        "eventSourceARN": event_source_arn,
    }
    if user_identity is not None:
        record["userIdentity"] = user_identity
    return record


def lambda_record(record: dict, event_source_arn: str) -> dict:
    """A GetRecords record, as boto3 returns it, in the shape Lambda gives the function.

    Lambda's differences from GetRecords: `ApproximateCreationDateTime` as epoch
    seconds, binary values base64-encoded, `eventSourceARN` added.
    """
    stream = record["dynamodb"]
    created = stream["ApproximateCreationDateTime"]
    raw = {
        name: _raw_image(stream[name])
        for name in ("Keys", "NewImage", "OldImage")
        if name in stream
    }
    return stream_record(
        record["eventName"],
        raw["Keys"],
        new_image=raw.get("NewImage"),
        old_image=raw.get("OldImage"),
        sequence_number=stream["SequenceNumber"],
        created_s=created.timestamp() if isinstance(created, datetime) else float(created),
        region=record["awsRegion"],
        event_source_arn=event_source_arn,
        event_id=record["eventID"],
        event_version=record["eventVersion"],
        view_type=stream["StreamViewType"],
        size_bytes=stream.get("SizeBytes"),
        user_identity=record.get("userIdentity"),
    )


def sequence_number(record: dict) -> str:
    return record["dynamodb"]["SequenceNumber"]


def lane_for(record: dict, partition_key: str, lanes: int) -> int:
    """The lane of a record: a stable hash of its partition key value."""
    key = record["dynamodb"]["Keys"].get(partition_key)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") % lanes


def retry_from(batch: list[dict], answer: object, failed: bool) -> int | None:
    """Where in `batch` to start again after an invocation; None when it is all done.

    `failed` is a function error or timeout. Lambda reads the answer's
    `batchItemFailures` (ReportBatchItemFailures) and retries from the
    lowest failed sequence number; an identifier it cannot find makes the
    whole batch a failure.
    """
    if failed:
        return 0
    failures = answer.get("batchItemFailures") if isinstance(answer, dict) else None
    if not failures:
        return None
    if not isinstance(failures, list):
        return 0
    positions = {sequence_number(record): i for i, record in enumerate(batch)}
    identifiers = [f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures]
    if any(identifier not in positions for identifier in identifiers):
        return 0
    return min(positions[identifier] for identifier in identifiers)


def _deployed(setting: str) -> int:
    """One of the deployed mapping's settings (`streamer.catalog.REQUESTS_STREAM_MAPPING`).

    Read when a policy is made, not when this module is imported: the record
    shaping above also serves the previous release's runtime in the item-format
    tests (tests/compat/scenario.py), whose `streamer` has no such setting.
    """
    from streamer.catalog import REQUESTS_STREAM_MAPPING

    return getattr(REQUESTS_STREAM_MAPPING, setting)


@dataclass(frozen=True)
class BatchPolicy:
    """The mapping's batching and retry settings, named as on `CreateEventSourceMapping`;
    by default the deployed stack's (`streamer.catalog.REQUESTS_STREAM_MAPPING`)."""

    batch_size: int = field(default_factory=lambda: _deployed("batch_size"))
    maximum_batching_window_s: float = field(
        default_factory=lambda: _deployed("maximum_batching_window_s")
    )
    #: -1: no limit, as on `CreateEventSourceMapping` ("retries until the record expires").
    maximum_retry_attempts: int = field(default_factory=lambda: _deployed("maximum_retry_attempts"))
    #: -1: no limit ("Lambda never discards old records"). AWS takes -1 or 60 to 604,800;
    #: locally any age, so that tests need not wait a minute.
    maximum_record_age_s: float = field(default_factory=lambda: _deployed("maximum_record_age_s"))
    bisect_batch_on_function_error: bool = field(
        default_factory=lambda: bool(_deployed("bisect_batch_on_function_error"))
    )
    retry_backoff_s: float = 0.2
    retry_backoff_max_s: float = 5.0


class Lane:
    """Records of some partition keys, in stream order, with at most one batch in flight.

    Lambda's stream error handling ("Using AWS Lambda with Amazon Kinesis", Error
    handling and Bisecting a batch; the DynamoDB Streams page says the same): a function
    error retries the batch until its records exceed the maximum age or the retry quota;
    with `BisectBatchOnFunctionError` the failed batch is first split in two, each half
    retried by itself, and "splitting a batch does not count towards the retry quota",
    so only a batch of one record that fails, a partial batch response or an answer
    Lambda cannot read counts; a partial batch response with
    bisecting on is "bisected at the returned sequence number and Lambda retries only
    the remaining records". A record older than `MaximumRecordAgeInSeconds` is never
    sent again: it is discarded as after the last retry, throttled or not.
    """

    def __init__(self, policy: BatchPolicy) -> None:
        self._policy = policy
        self._pending: deque[tuple[float, dict]] = deque()
        self._in_flight = 0
        self._attempts = 0
        self._not_before = 0.0
        #: The batches a bisected batch was split into, by size, in stream order: they
        #: cover the front of `_pending` and go out before any new batch is made.
        self._splits: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def busy(self) -> bool:
        return self._in_flight > 0

    @property
    def _retrying(self) -> bool:
        return bool(self._attempts or self._splits)

    def add(self, record: dict, now: float) -> None:
        self._pending.append((now, record))

    def take(self, now: float) -> list[dict] | None:
        """The next batch to invoke with, or None: busy, empty, backing off, or still batching."""
        if self.busy or not self._pending or now < self._not_before:
            return None
        oldest_at = self._pending[0][0]
        full = len(self._pending) >= self._policy.batch_size
        waited = now - oldest_at >= self._policy.maximum_batching_window_s
        if not (full or waited or self._retrying):
            return None
        size = self._splits[0] if self._splits else self._policy.batch_size
        batch = [record for _, record in list(self._pending)[:size]]
        self._in_flight = len(batch)
        return batch

    def expire(self, now: float) -> list[dict]:
        """Take out the records that waited past the maximum record age; returns them.

        The age counts from when the lane received the record (the stream's poll,
        a poll interval at most after DynamoDB wrote it). A batch in flight is left
        alone: its records are judged when it comes back.
        """
        expired: list[dict] = []
        if self.busy:
            return expired
        limit = self._policy.maximum_record_age_s
        if limit < 0:
            return expired
        while self._pending and now - self._pending[0][0] > limit:
            expired.append(self._pending.popleft()[1])
            if self._splits:
                self._splits[0] -= 1
                if not self._splits[0]:
                    self._splits.popleft()
        if expired:
            # The retries counted were the first record's, which a retry starts from: it is
            # gone, so the records after it start their own count.
            self._attempts = 0
        return expired

    def next_due(self) -> float | None:
        """When `take` would next give a batch if nothing else changes; None: busy or empty."""
        if self.busy or not self._pending:
            return None
        if len(self._pending) >= self._policy.batch_size or self._retrying:
            return self._not_before
        return max(self._not_before, self._pending[0][0] + self._policy.maximum_batching_window_s)

    def throttled(self, now: float) -> None:
        """The batch in flight was throttled: it was never run, so it goes again whole.

        A throttle is not a function error: it does not count against
        `maximum_retry_attempts` (the records wait until they expire,
        https://docs.aws.amazon.com/lambda/latest/dg/services-dynamodb-errors.html).
        The lane backs off as after a first failure.
        """
        self._in_flight = 0
        self._not_before = now + self._policy.retry_backoff_s

    def settle(
        self, retry_at: int | None, now: float, *, function_error: bool = False
    ) -> list[dict]:
        """Record the outcome of the batch in flight; returns the records given up on.

        `retry_at` is `retry_from`'s answer: the records before it are done.
        `function_error`: the invocation failed (an error or a timeout), rather than
        answering with `batchItemFailures`; only that bisects a batch.
        """
        batch_size, self._in_flight = self._in_flight, 0
        if self._splits:
            self._splits.popleft()
        done = batch_size if retry_at is None else retry_at
        for _ in range(done):
            self._pending.popleft()
        if retry_at is None:
            self._attempts = 0
            return []
        remaining = batch_size - done
        bisect = self._policy.bisect_batch_on_function_error
        if bisect and function_error and remaining > 1:
            # Split in two, not counted as a retry.
            first = remaining // 2
            self._splits.extendleft((remaining - first, first))
            self._not_before = now + self._backoff(max(self._attempts, 1))
            return []
        if done:
            # Progress was made: the first record that failed starts its own count.
            self._attempts = 0
        if bisect:
            # Bisected at the failed record: only the batch's remaining records go again.
            self._splits.appendleft(remaining)
        self._attempts += 1
        retries = self._policy.maximum_retry_attempts
        if 0 <= retries < self._attempts:
            self._attempts = 0
            if bisect:
                self._splits.popleft()
            return [self._pending.popleft()[1] for _ in range(remaining)]
        self._not_before = now + self._backoff(self._attempts)
        return []

    def _backoff(self, attempt: int) -> float:
        backoff = self._policy.retry_backoff_s * 2 ** (attempt - 1)
        return min(backoff, self._policy.retry_backoff_max_s)


def matches_filter(pattern: dict, record: dict) -> bool:
    """Whether a record passes a Lambda event filter pattern.

    Supports what Streamer's mappings use: nested objects whose leaves are
    lists of exact values (a record matches if its value is one of them).
    """
    for key, expected in pattern.items():
        if key not in record:
            return False
        actual = record[key]
        if isinstance(expected, dict):
            if not isinstance(actual, dict) or not matches_filter(expected, actual):
                return False
        elif isinstance(expected, list):
            if any(isinstance(option, dict) for option in expected):
                raise ValueError("only exact-value filter patterns are supported locally")
            if actual not in expected:
                return False
        else:
            raise ValueError("a filter pattern's leaves must be lists of values")
    return True
