"""The replicator reads on when a stream refuses an iterator it handed out.

DynamoDB Local refuses (`TrimmedDataAccessException`) an iterator it handed
out on an empty shard once the first record arrives, and every iterator
expires after 15 minutes; the stack's event source mapping takes a fresh one
then (`local.event_source_mapping`), and so must the replicator, or a
two-region stack on DynamoDB Local never replicates anything.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local import dynamodb
from local.replicator import Replicator

US, EU = "us-east-1", "eu-west-1"


class RefusesFirstIterators:
    """A streams client that refuses, for good, the first iterator it hands out per shard."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._refused: set[str] = set()
        self._shards: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get_shard_iterator(self, **arguments: Any) -> dict:
        answer = self._inner.get_shard_iterator(**arguments)
        if arguments["ShardId"] not in self._shards:
            self._shards.add(arguments["ShardId"])
            self._refused.add(answer["ShardIterator"])
        return answer

    def get_records(self, **arguments: Any) -> dict:
        if arguments["ShardIterator"] in self._refused:
            raise ClientError(
                {
                    "Error": {
                        "Code": "TrimmedDataAccessException",
                        "Message": "The operation attempted to read past the oldest stream "
                        "record in a shard.",
                    }
                },
                "GetRecords",
            )
        return self._inner.get_records(**arguments)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    started = {region: dynamodb.MotoServer("127.0.0.1", region) for region in (US, EU)}
    try:
        yield {region: server.endpoint_url for region, server in started.items()}
    finally:
        for server in started.values():
            server.stop()


def test_a_refused_iterator_is_replaced_and_the_write_replicates(
    servers: dict[str, str],
) -> None:
    names = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in ("connections", "requests")}
    names["subscriptions"] = f"subscriptions-{uuid.uuid4().hex[:8]}"
    for region, url in servers.items():
        dynamodb.create_tables(url, region, names)
    table = names["requests"]
    replicator = Replicator(servers, [table], lag_s=0, poll_interval_s=0.02)
    for region in (US, EU):
        replicator._streams_api[region] = RefusesFirstIterators(replicator._streams_api[region])
    replicator.start()
    try:
        key = {"request_key": {"S": "acme#alice#r1"}}
        us = dynamodb.client("dynamodb", servers[US], US)
        us.put_item(TableName=table, Item={**key, "status": {"S": "PENDING"}})
        eu = dynamodb.client("dynamodb", servers[EU], EU)
        deadline = time.monotonic() + 20
        while "Item" not in eu.get_item(TableName=table, Key=key, ConsistentRead=True):
            assert time.monotonic() < deadline, "the write never reached eu-west-1"
            time.sleep(0.05)
    finally:
        replicator.stop()
