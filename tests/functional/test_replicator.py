"""The local replicator between two moto servers: the races of global tables, reproduced.

Each region's DynamoDB is a moto server in a child process, as the local stack
starts it (`local.dynamodb.MotoServer`), with Streamer's tables created from
`streamer.schema`. The replicator copies writes between them after a lag and
settles concurrent writes by last writer wins, so the race of issue 16 (two
regions' conditional writes to one request, both accepted, one lost) happens
here the way it happens between AWS regions.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local import dynamodb
from local.replicator import Replicator

US, EU = "us-east-1", "eu-west-1"
#: Long enough that a read right after a write surely comes before the replication.
LAG_S = 2.0


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    started = {region: dynamodb.MotoServer("127.0.0.1", region) for region in (US, EU)}
    try:
        yield {region: server.endpoint_url for region, server in started.items()}
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture
def tables(servers: dict[str, str]) -> dict[str, str]:
    """Streamer's tables, under fresh names, in both regions."""
    suffix = uuid.uuid4().hex[:8]
    names = {name: f"{name}-{suffix}" for name in ("connections", "requests", "subscriptions")}
    for region, url in servers.items():
        dynamodb.create_tables(url, region, names)
    return names


@pytest.fixture
def replicator(servers: dict[str, str], tables: dict[str, str]) -> Iterator[Replicator]:
    replication = Replicator(servers, list(tables.values()), lag_s=LAG_S, poll_interval_s=0.02)
    replication.start()
    try:
        yield replication
    finally:
        replication.stop()


@pytest.fixture
def db(servers: dict[str, str]) -> dict[str, Any]:
    return {region: dynamodb.client("dynamodb", url, region) for region, url in servers.items()}


def eventually(
    read: Callable[[], Any], wanted: Callable[[Any], bool], timeout_s: float = 20
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if wanted(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {timeout_s} s")
        time.sleep(0.05)


def request_key(name: str) -> dict:
    return {"request_key": {"S": f"acme#alice#{name}"}}


def get(client: Any, table: str, key: dict) -> dict | None:
    return client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")


def status_in(client: Any, table: str, key: dict) -> str | None:
    item = get(client, table, key)
    return item["status"]["S"] if item else None


def settled(replicator: Replicator, db: dict[str, Any], table: str, key: dict) -> dict | None:
    """The item once no write is in flight and both replicas hold the same version of it."""

    def both() -> tuple[bool, dict | None, dict | None]:
        return replicator.converged(), get(db[US], table, key), get(db[EU], table, key)

    return eventually(both, lambda seen: seen[0] and seen[1] == seen[2])[1]


def conditional_move(client: Any, table: str, key: dict, to: str) -> bool:
    """PENDING to `to`, as the processor's claim or the router's cancel writes it."""
    try:
        client.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET #s = :to",
            ConditionExpression="#s = :pending",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":to": {"S": to}, ":pending": {"S": "PENDING"}},
        )
    except client.exceptions.ConditionalCheckFailedException:
        return False
    return True


def test_a_write_in_one_region_appears_in_the_other_after_the_lag(replicator, db, tables):
    requests = tables["requests"]
    key = request_key("r1")
    item = {**key, "status": {"S": "PENDING"}, "seq": {"N": "0"}}
    # WHEN a request is written in us-east-1
    db[US].put_item(TableName=requests, Item=item)
    # THEN eu-west-1 does not have it yet, and has it after the lag
    assert get(db[EU], requests, key) is None
    assert eventually(lambda: get(db[EU], requests, key), lambda found: found is not None) == item


def test_a_table_without_a_stream_is_replicated_too(replicator, db, tables):
    # The connections table has no stream of its own; a global table's replicas all do.
    connections = tables["connections"]
    key = {"connection_id": {"S": "c-1"}}
    db[EU].put_item(TableName=connections, Item={**key, "user_key": {"S": "acme#alice"}})
    found = eventually(lambda: get(db[US], connections, key), lambda item: item is not None)
    assert found["user_key"] == {"S": "acme#alice"}


@pytest.mark.parametrize(("first", "second"), [(US, EU), (EU, US)])
def test_two_regions_conditional_writes_both_succeed_and_the_later_wins(
    replicator, db, tables, first, second
):
    # GIVEN a PENDING request in both replicas
    requests = tables["requests"]
    key = request_key(f"race-{first}")
    db[US].put_item(TableName=requests, Item={**key, "status": {"S": "PENDING"}})
    eventually(lambda: status_in(db[EU], requests, key), lambda status: status == "PENDING")
    # WHEN one region claims it and, before the claim replicates, the other cancels it
    claimed = conditional_move(db[first], requests, key, "PROCESSING")
    # One millisecond at least between the two, the precision of the stream's timestamps.
    time.sleep(0.01)
    cancelled = conditional_move(db[second], requests, key, "CANCELLED")
    # THEN both conditions held, each against its own replica
    assert (claimed, cancelled) == (True, True)
    # AND the later write is the request's state in both regions: the claim is lost
    assert settled(replicator, db, requests, key)["status"] == {"S": "CANCELLED"}


def test_a_later_write_in_the_target_region_is_not_overwritten_by_an_older_replicated_one(
    replicator, db, tables
):
    requests = tables["requests"]
    key = request_key("older")
    db[US].put_item(TableName=requests, Item={**key, "status": {"S": "PROCESSING"}})
    time.sleep(0.01)
    db[EU].put_item(TableName=requests, Item={**key, "status": {"S": "COMPLETED"}})
    assert settled(replicator, db, requests, key)["status"] == {"S": "COMPLETED"}


def test_a_delete_replicates(replicator, db, tables):
    requests = tables["requests"]
    key = request_key("gone")
    db[US].put_item(TableName=requests, Item={**key, "status": {"S": "COMPLETED"}})
    eventually(lambda: get(db[EU], requests, key), lambda item: item is not None)
    # WHEN the item is deleted in eu-west-1
    db[EU].delete_item(TableName=requests, Key=key)
    # THEN it is deleted in us-east-1 after the lag
    assert get(db[US], requests, key) is not None
    eventually(lambda: get(db[US], requests, key), lambda item: item is None)
    assert settled(replicator, db, requests, key) is None


def stream_records(servers: dict[str, str], region: str, table: str, key: dict) -> list[str]:
    """The event names of `key`'s records in `region`'s stream of `table`."""
    url = servers[region]
    streams = dynamodb.client("dynamodbstreams", url, region)
    arn = dynamodb.client("dynamodb", url, region).describe_table(TableName=table)["Table"][
        "LatestStreamArn"
    ]
    names = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            answer = streams.get_records(ShardIterator=iterator)
            names += [r["eventName"] for r in answer["Records"] if r["dynamodb"]["Keys"] == key]
            iterator = answer.get("NextShardIterator") if answer["Records"] else None
    return names


def test_a_replicated_write_is_not_replicated_back(replicator, servers, db, tables):
    requests = tables["requests"]
    key = request_key("once")
    db[US].put_item(TableName=requests, Item={**key, "status": {"S": "PENDING"}})
    settled(replicator, db, requests, key)
    # One more write in the origin, replicated in turn: every record is the
    # write itself or its one copy, none an echo sent back.
    db[US].update_item(
        TableName=requests,
        Key=key,
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "PROCESSING"}},
    )
    assert settled(replicator, db, requests, key)["status"] == {"S": "PROCESSING"}
    assert stream_records(servers, US, requests, key) == ["INSERT", "MODIFY"]
    assert stream_records(servers, EU, requests, key) == ["INSERT", "MODIFY"]


def test_an_isolated_region_catches_up_when_reconnected(replicator, db, tables):
    requests = tables["requests"]
    key = request_key("isolated")
    replicator.lag_s = 0
    replicator.isolate(EU)
    db[US].put_item(TableName=requests, Item={**key, "status": {"S": "PENDING"}})
    db[EU].put_item(TableName=requests, Item={**key, "status": {"S": "CANCELLED"}})
    # While cut off, neither region's write reaches the other.
    assert not replicator.converged()
    assert status_in(db[US], requests, key) == "PENDING"
    replicator.reconnect(EU)
    assert settled(replicator, db, requests, key)["status"] == {"S": "CANCELLED"}
