"""Drive one release's runtime on moto: write its items (`generate`) or read another's (`consume`).

Run as a script in a process of its own, with the release's `streamer` package
first on the path: the current one (`lambdas/`) or the previous release's
frozen copy (`tests/compat/previous/`, commit `tests/compat/previous/RELEASE`).
Two releases cannot share one interpreter (both are the package `streamer`),
so each runs here in turn, on its own moto, and they meet through the items
and stream records this script dumps and loads (raw DynamoDB JSON).
Only entry points and store functions both releases have are used.

    PYTHONPATH=<release>:. python tests/compat/scenario.py generate tests/fixtures/formats/<N>
    PYTHONPATH=<release>:. python tests/compat/scenario.py consume <fixture> <tables.json> <out>
    PYTHONPATH=<release>:. python tests/compat/scenario.py attributes <out>

`generate` must run against the release whose items it writes: the previous
release's fixture (format 1) with `PYTHONPATH=tests/compat/previous:.`, this
release's with `PYTHONPATH=lambdas:.`. It writes `items.json` (every table's
items after each step of a life), `stream.json` (the requests table's stream
records, shaped as Lambda delivers them) and `tables.json` (the release's
`CreateTable` requests).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

REGION = "us-east-1"
EVENTS = Path(__file__).resolve().parents[1] / "unit" / "events"
TABLE_NAMES = {"connections": "compat-connections", "requests": "compat-requests"}
TABLE_NAMES["subscriptions"] = "compat-subscriptions"
OWNER, SUBSCRIBER = "conn-owner", "conn-follower"
ASYNC_ID, SYNC_ID, TOPIC, ACTION = "async-1", "sync-1", "news", "generate_report"
FAILING_ID = "async-2"


def environment() -> None:
    from streamer import config

    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled",
    )
    for name in config.ALL:
        os.environ.pop(name, None)
    os.environ[config.CONNECTIONS_TABLE] = TABLE_NAMES["connections"]
    os.environ[config.REQUESTS_TABLE] = TABLE_NAMES["requests"]
    os.environ[config.SUBSCRIPTIONS_TABLE] = TABLE_NAMES["subscriptions"]
    # The key layout both releases read: the previous one knows one due partition per region.
    os.environ["STREAMER_DUE_SHARDS"] = "1"


class Context:
    function_name = "streamer-compat"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:streamer-compat"
    aws_request_id = "req-compat-1"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class Posts:
    """The management API: what was posted to each connection, by message type."""

    def __init__(self) -> None:
        self.sent: dict[str, list[dict[str, Any]]] = {}

    def factory(self, endpoint: str) -> Any:
        posts = self

        class Client:
            def post_to_connection(self, ConnectionId: str, Data: bytes) -> dict:
                posts.sent.setdefault(ConnectionId, []).append(json.loads(Data))
                return {}

        return Client()


def start(tables: list[dict[str, Any]]) -> Posts:
    """Fresh tables and a fresh runtime delivering to `Posts`."""
    import boto3

    from streamer import runtime, store
    from streamer.delivery import Delivery

    client = boto3.client("dynamodb", region_name=REGION)
    for request in tables:
        client.create_table(**request)
    runtime.reset()
    posts = Posts()
    rt = runtime.current()
    rt.__dict__["delivery"] = Delivery(
        rt.settings.region, on_gone=store.forget_connection, client_factory=posts.factory
    )
    return posts


def message_event(connection_id: str, body: dict[str, Any]) -> dict[str, Any]:
    event = json.loads((EVENTS / "message.json").read_text())
    event["requestContext"].update(connectionId=connection_id, authorizer=identity())
    event["body"] = json.dumps(body)
    return event


def identity() -> dict[str, Any]:
    return {
        "principalId": "user-a",
        "user_id": "user-a",
        "tenant_id": "tenant-1",
        "permissions": "",
        "integrationLatency": 0,
    }


def send(connection_id: str, body: dict[str, Any]) -> dict[str, Any]:
    from streamer.entry import router

    answer = router.handler(message_event(connection_id, body), Context())
    return json.loads(answer["body"])


def connect(connection_id: str) -> None:
    from streamer.entry import connect as entry

    event = json.loads((EVENTS / "connect.json").read_text())
    event["requestContext"].update(connectionId=connection_id, authorizer=identity())
    entry.handler(event, Context())


def publish(body: dict[str, Any]) -> None:
    from streamer.entry import publish as entry

    event = json.loads((EVENTS / "eventbridge_notification.json").read_text())
    event["detail"] = body
    entry.handler(event, Context())


def stream_records(position: dict[str, str]) -> list[dict[str, Any]]:
    """The requests table's records since `position`, as Lambda delivers them."""
    import boto3

    from local.streams import lambda_record

    dynamodb = boto3.client("dynamodb", region_name=REGION)
    arn = dynamodb.describe_table(TableName=TABLE_NAMES["requests"])["Table"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams", region_name=REGION)
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        shard_id = shard["ShardId"]
        where = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": position[shard_id]}
            if shard_id in position
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, **where)
        for record in streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]:
            records.append(lambda_record(record, arn))
            position[shard_id] = record["dynamodb"]["SequenceNumber"]
    return records


def process(records: list[dict[str, Any]]) -> dict[str, Any]:
    from streamer.entry import processor

    return processor.handler({"Records": records}, Context())


def snapshot() -> dict[str, list[dict[str, Any]]]:
    import boto3

    client = boto3.client("dynamodb", region_name=REGION)
    tables = {}
    for table, name in TABLE_NAMES.items():
        items = client.scan(TableName=name, ConsistentRead=True)["Items"]
        tables[table] = sorted(items, key=lambda i: json.dumps(i, sort_keys=True))
    return tables


def load(tables: dict[str, list[dict[str, Any]]]) -> None:
    import boto3

    client = boto3.client("dynamodb", region_name=REGION)
    for table, items in tables.items():
        for item in items:
            client.put_item(TableName=TABLE_NAMES[table], Item=item)


def circuit_writes() -> None:
    """A circuit that tripped: one count bucket, and the state item opened."""
    from streamer.circuit import CircuitState, Counts
    from streamer.store import circuits

    circuits.add(ACTION, 0, 100, Counts(20, 20), ttl=2_000_000_000)
    circuits.open_circuit(ACTION, CircuitState(), open_until=1_000)


def table_requests() -> list[dict[str, Any]]:
    from streamer import schema

    return [
        schema.create_table_request(table, TABLE_NAMES[table.logical_name])
        for table in schema.TABLES
    ]


def generate(out: Path) -> None:
    """One of each item this release writes, after each step of a life, and its stream:
    two connections, a sync request with an id, an async request that completes and one
    that fails, a subscription to a request and to a topic, a topic's retained
    notification, a circuit's count and state items."""
    environment()
    from moto import mock_aws

    steps: list[dict[str, Any]] = []
    with mock_aws():
        start(table_requests())
        position: dict[str, str] = {}
        records: list[dict[str, Any]] = []

        def step(name: str) -> None:
            records.extend({"step": name, "record": r} for r in stream_records(position))
            steps.append({"step": name, "tables": snapshot()})

        connect(OWNER)
        connect(SUBSCRIBER)
        step("connected")
        send(OWNER, {"action": "echo", "id": SYNC_ID, "payload": {"hello": "world"}})
        step("sync answered")
        send(OWNER, {"action": ACTION, "id": ASYNC_ID, "payload": {"pages": 2, "page_ms": 0}})
        step("async queued")
        send(SUBSCRIBER, {"action": "subscribe", "request_id": ASYNC_ID})
        send(SUBSCRIBER, {"action": "subscribe", "topic": TOPIC})
        publish({"tenant_id": "tenant-1", "topic": TOPIC, "event": "posted", "data": {"n": 1}})
        step("subscribed")
        process([r["record"] for r in records if r["step"] == "async queued"])
        step("async completed")
        payload = {"pages": 2, "page_ms": 0, "fail_at_page": 1}
        send(OWNER, {"action": ACTION, "id": FAILING_ID, "payload": payload})
        step("failing queued")
        process([r["record"] for r in records if r["step"] == "failing queued"])
        step("async failed")
        circuit_writes()
        step("circuit opened")
    out.mkdir(parents=True, exist_ok=True)
    (out / "items.json").write_text(json.dumps(steps, indent=1, sort_keys=True) + "\n")
    (out / "stream.json").write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
    (out / "tables.json").write_text(json.dumps(table_requests(), indent=1, sort_keys=True) + "\n")


def at(steps: list[dict[str, Any]], name: str) -> dict[str, list[dict[str, Any]]]:
    return next(s["tables"] for s in steps if s["step"] == name)


def types(posts: Posts, connection_id: str) -> list[str]:
    return [m["type"] for m in posts.sent.get(connection_id, [])]


def request_status(request_id: str) -> str | None:
    from streamer import store

    item = store.get_request("tenant-1#user-a", request_id)
    return None if item is None else item.status


def consume(fixture: Path, tables_file: Path, out: Path) -> None:
    """What this release does with another's items and stream records; a report of it."""
    environment()
    from moto import mock_aws

    steps = json.loads((fixture / "items.json").read_text())
    stream = json.loads((fixture / "stream.json").read_text())
    tables = json.loads(tables_file.read_text())
    report: dict[str, Any] = {}

    # A request the other release queued, run from its INSERT record.
    with mock_aws():
        posts = start(tables)
        load(at(steps, "subscribed"))
        inserts = [r["record"] for r in stream if r["step"] == "async queued"]
        failures = process(inserts)["batchItemFailures"]
        report["stream"] = {
            "failures": failures,
            "status": request_status(ASYNC_ID),
            "owner": types(posts, OWNER),
            "subscriber": types(posts, SUBSCRIBER),
        }
        # Its sync request: the stored answer of a repeated id, and a status read.
        again = send(OWNER, {"action": "echo", "id": SYNC_ID, "payload": {"hello": "world"}})
        status = send(OWNER, {"action": "status", "request_id": SYNC_ID})
        report["sync"] = {"again": again.get("data"), "status": status["request"]["status"]}
        # Its connections and subscriptions receive this release's deliveries.
        posts.sent.clear()
        publish({"tenant_id": "tenant-1", "topic": TOPIC, "event": "later", "data": {"n": 2}})
        publish({"tenant_id": "tenant-1", "user_id": "user-a", "event": "direct", "data": {}})
        report["deliveries"] = {
            "owner": types(posts, OWNER),
            "subscriber": types(posts, SUBSCRIBER),
        }
        # A late subscriber to the topic gets the retained notification the other release kept.
        connect("conn-late")
        retained = send("conn-late", {"action": "subscribe", "topic": TOPIC})
        report["retained"] = retained.get("data")

    # The same request, never picked up: this release's sweeper puts it back, its processor runs it.
    with mock_aws():
        posts = start(tables)
        queued = at(steps, "subscribed")
        for item in queued["requests"]:
            if item["request_id"]["S"] == ASYNC_ID:
                item["due_at"] = {"N": "0"}
        load(queued)
        from streamer.entry import sweeper

        position: dict[str, str] = {}
        stream_records(position)
        swept = sweeper.handler({}, Context())
        process(stream_records(position))
        report["sweep"] = {
            "redriven": swept["redriven"],
            "status": request_status(ASYNC_ID),
            "owner": types(posts, OWNER),
        }

    # The INSERT record delivered again after the request ended (its worker's invocation
    # failed after the finish): what this release sends, with the sweeper's next run.
    with mock_aws():
        posts = start(tables)
        load(at(steps, "async completed"))
        from streamer.entry import sweeper

        failures = process(inserts)["batchItemFailures"]
        swept = sweeper.handler({}, Context())
        report["redelivered"] = {
            "failures": failures,
            "resent": swept["resent"],
            "owner": types(posts, OWNER),
        }

    # The circuit the other release opened is open for this one.
    with mock_aws():
        start(tables)
        load(at(steps, "circuit opened"))
        from streamer.store import circuits

        state, current, _ = circuits.read(ACTION, 0, 100)
        report["circuit"] = {"open_until": state.open_until, "calls": current.calls}

    # Every item of every step parses as this release's models.
    from streamer.models import Connection, RequestItem, Subscription

    models = {"connections": Connection, "requests": RequestItem, "subscriptions": Subscription}
    unreadable = []
    for s in steps:
        for table, items in s["tables"].items():
            for item in items:
                if item.get("connection_id", {}).get("S", "").startswith("circuit#"):
                    continue
                try:
                    parsed = models[table].from_raw_data(json.loads(json.dumps(item)))
                    if table == "requests":
                        parsed.snapshot()
                except Exception as error:
                    unreadable.append(f"{s['step']}: {table}: {error!r}")
    report["unreadable"] = unreadable
    out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")


def attributes(out: Path) -> None:
    """What this release's models read: per table, each attribute's type and whether it may be
    missing (null, or a default that fills it in)."""
    from streamer.models import Connection, RequestItem, Subscription
    from streamer.store.circuits import CircuitRecord

    models = {
        "connections": Connection,
        "circuits": CircuitRecord,
        "requests": RequestItem,
        "subscriptions": Subscription,
    }
    declared = {
        table: {
            attr.attr_name: {
                "type": attr.attr_type,
                "optional": bool(attr.null) or attr.default is not None,
            }
            for attr in model.get_attributes().values()
        }
        for table, model in models.items()
    }
    out.write_text(json.dumps(declared, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "generate":
        generate(Path(args[0]))
    elif command == "attributes":
        attributes(Path(args[0]))
    elif command == "consume":
        consume(Path(args[0]), Path(args[1]), Path(args[2]))
    else:
        raise SystemExit(f"unknown command {command!r}: generate, consume or attributes")
