"""Lambda's DynamoDB Streams event source mapping, as plain data: records, lanes, retries.

`event_source_mapping` does the I/O; this module decides what it sends and
what it does with the answer, the way Lambda does:

- a record reaches the function in Lambda's shape (`lambda_record`);
- records of one partition key always go to the same lane, and a lane has at
  most one batch in flight, so an item's records are never reordered
  (ParallelizationFactor);
- a batch goes out when it is full or its oldest record has waited the
  batching window;
- `batchItemFailures` retries from the lowest failed sequence number; a
  function error, or an identifier that is not in the batch, retries it all;
- after `max_retries` retries the batch's remaining records are discarded
  (and logged by the caller), as Lambda discards them to an on-failure
  destination.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import deque
from dataclasses import dataclass
from datetime import datetime


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


def lambda_record(record: dict, event_source_arn: str) -> dict:
    """A GetRecords record, as boto3 returns it, in the shape Lambda gives the function.

    Lambda's differences from GetRecords: `eventVersion` 1.1,
    `ApproximateCreationDateTime` as epoch seconds, `eventSourceARN` added.
    """
    stream = dict(record["dynamodb"])
    created = stream.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        stream["ApproximateCreationDateTime"] = float(int(created.timestamp()))
    for image in ("Keys", "NewImage", "OldImage"):
        if image in stream:
            stream[image] = _raw_image(stream[image])
    converted = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": record["awsRegion"],
        "dynamodb": stream,
        "eventSourceARN": event_source_arn,
    }
    if "userIdentity" in record:
        converted["userIdentity"] = record["userIdentity"]
    return converted


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


@dataclass(frozen=True)
class BatchPolicy:
    """The mapping's batching and retry settings, named as on `CreateEventSourceMapping`."""

    batch_size: int = 100
    maximum_batching_window_s: float = 0.0
    maximum_retry_attempts: int = 3
    retry_backoff_s: float = 0.2
    retry_backoff_max_s: float = 5.0


class Lane:
    """Records of some partition keys, in stream order, with at most one batch in flight."""

    def __init__(self, policy: BatchPolicy) -> None:
        self._policy = policy
        self._pending: deque[tuple[float, dict]] = deque()
        self._in_flight = 0
        self._attempts = 0
        self._not_before = 0.0

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def busy(self) -> bool:
        return self._in_flight > 0

    def add(self, record: dict, now: float) -> None:
        self._pending.append((now, record))

    def take(self, now: float) -> list[dict] | None:
        """The next batch to invoke with, or None: busy, empty, backing off, or still batching."""
        if self.busy or not self._pending or now < self._not_before:
            return None
        oldest_at = self._pending[0][0]
        full = len(self._pending) >= self._policy.batch_size
        waited = now - oldest_at >= self._policy.maximum_batching_window_s
        if not (full or waited or self._attempts):
            return None
        batch = [record for _, record in list(self._pending)[: self._policy.batch_size]]
        self._in_flight = len(batch)
        return batch

    def next_due(self) -> float | None:
        """When `take` would next give a batch if nothing else changes; None: busy or empty."""
        if self.busy or not self._pending:
            return None
        if len(self._pending) >= self._policy.batch_size or self._attempts:
            return self._not_before
        return max(self._not_before, self._pending[0][0] + self._policy.maximum_batching_window_s)

    def settle(self, retry_at: int | None, now: float) -> list[dict]:
        """Record the outcome of the batch in flight; returns the records given up on.

        `retry_at` is `retry_from`'s answer: the records before it are done.
        """
        batch_size, self._in_flight = self._in_flight, 0
        done = batch_size if retry_at is None else retry_at
        for _ in range(done):
            self._pending.popleft()
        if retry_at is None:
            self._attempts = 0
            return []
        if done:
            # Progress was made: the first record that failed starts its own count.
            self._attempts = 0
        self._attempts += 1
        if self._attempts > self._policy.maximum_retry_attempts:
            self._attempts = 0
            return [self._pending.popleft()[1] for _ in range(batch_size - done)]
        backoff = self._policy.retry_backoff_s * 2 ** (self._attempts - 1)
        self._not_before = now + min(backoff, self._policy.retry_backoff_max_s)
        return []


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
