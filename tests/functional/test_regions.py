"""Two regions on moto: each request is decided at its home region's table, whichever
region's function writes it, and a stopped region's stalled requests are taken over.

moto keeps a backend per region, so us-east-1's and eu-west-1's tables are two
tables here, as two replicas of a global table are, but nothing replicates
between them: what a test needs to be in the other replica, it copies there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from streamer import config, runtime, schema, store
from streamer.config import PICKUP_TIMEOUT_MS
from streamer.entry import authorizer as authorizer_entry
from streamer.keys import owner_key, request_key
from streamer.models import PENDING
from streamer.progress_flusher import MAX_UNPERSISTED_MESSAGES
from streamer.regions import home_region
from streamer.store import heartbeats
from streamer.sweeper import sweep
from tests.conftest import TABLES, FakeManagementApi
from tests.functional.helpers import Client

EAST, WEST = "us-east-1", "eu-west-1"
REGIONS = (EAST, WEST)
#: A user of tenant t1 whose home (the decider of its requests) is us-east-1.
EAST_USER = next(
    u for u in (f"user-{n}" for n in range(100)) if home_region(f"t1#{u}", REGIONS) == EAST
)
WEST_USER = next(
    u for u in (f"user-{n}" for n in range(100)) if home_region(f"t1#{u}", REGIONS) == WEST
)
REPORT = {"action": "generate_report", "id": "r-1", "payload": {"pages": 2}}


@pytest.fixture
def two_regions(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Streamer's tables in both regions, the functions configured for both."""
    from moto import mock_aws

    monkeypatch.setenv(config.APP_MODULE, "tests.functional.apps")
    monkeypatch.setenv(config.REGIONS, ",".join(REGIONS))
    with mock_aws():
        for region in REGIONS:
            client = boto3.client("dynamodb", region_name=region)
            for table in schema.TABLES:
                name = TABLES[f"STREAMER_{table.logical_name.upper()}_TABLE"]
                client.create_table(**schema.create_table_request(table, name))
        runtime.reset()
        authorizer_entry.reset()
        yield
        runtime.reset()
        authorizer_entry.reset()


def in_region(monkeypatch: pytest.MonkeyPatch, region: str) -> FakeManagementApi:
    """The functions of `region` from now on (a fresh runtime), with a fake management API."""
    from streamer.delivery import Delivery

    monkeypatch.setenv("AWS_REGION", region)
    runtime.reset()
    api = FakeManagementApi()
    rt = runtime.current()
    rt.__dict__["delivery"] = Delivery(
        region, on_gone=store.forget_connection, client_factory=api.factory
    )
    return api


def stored(region: str, user: str, request_id: str = "r-1") -> dict[str, Any] | None:
    """The request as `region`'s replica holds it (raw), or None."""
    key = request_key(owner_key("t1", user), request_id)
    answer = boto3.client("dynamodb", region_name=region).get_item(
        TableName=TABLES[config.REQUESTS_TABLE],
        Key={"request_key": {"S": key}},
        ConsistentRead=True,
    )
    return answer.get("Item")


def replicate(source: str, target: str, user: str, request_id: str = "r-1") -> None:
    """Copy a request from one region's table to the other's, as global tables would."""
    item = stored(source, user, request_id)
    assert item is not None
    boto3.client("dynamodb", region_name=target).put_item(
        TableName=TABLES[config.REQUESTS_TABLE], Item=item
    )


def connected(user: str) -> Client:
    client = Client(f"conn-{user}", user=user, tenant="t1")
    client.connect()
    return client


def test_a_request_sent_to_another_region_is_created_and_run_at_its_home(two_regions, monkeypatch):
    # GIVEN a user whose home is us-east-1, connected to eu-west-1
    in_region(monkeypatch, WEST)
    client = connected(EAST_USER)

    # WHEN an async request is sent there
    answer = client.send(REPORT)

    # THEN it is stored in us-east-1's table only, to be run by us-east-1
    assert answer["status"] == "QUEUED"
    item = stored(EAST, EAST_USER)
    assert item is not None and stored(WEST, EAST_USER) is None
    assert item["origin_region"] == {"S": EAST}
    # and should it stall, us-east-1's sweeper finds it: the cap's index alone watches it
    # (the cap is on), and its scan keeps the requests whose runner is its own region
    assert "due_region" not in item and item["active_owner"] == {"S": owner_key("t1", EAST_USER)}


def test_a_home_user_s_request_stays_in_its_own_region(two_regions, monkeypatch):
    in_region(monkeypatch, WEST)
    connected(WEST_USER).send(REPORT)
    assert stored(WEST, WEST_USER)["origin_region"] == {"S": WEST}
    assert stored(EAST, WEST_USER) is None


def test_the_same_id_sent_to_both_regions_is_one_request(two_regions, monkeypatch):
    # GIVEN a request created through us-east-1
    in_region(monkeypatch, EAST)
    first = connected(EAST_USER).send(REPORT)

    # WHEN the same id comes to eu-west-1 (before any replication), same and other payload
    in_region(monkeypatch, WEST)
    client = connected(EAST_USER)
    again = client.send(REPORT)
    other = client.send({**REPORT, "payload": {"pages": 3}})

    # THEN eu-west-1 answers with the existing request, or CONFLICT: one request in all
    assert again == first
    assert other["error"]["code"] == "CONFLICT" and other["request_id"] == "r-1"
    assert stored(WEST, EAST_USER) is None


def test_status_and_cancel_from_another_region_see_the_request_before_replication(
    two_regions, monkeypatch
):
    # GIVEN a request created in us-east-1, not replicated to eu-west-1
    in_region(monkeypatch, EAST)
    connected(EAST_USER).send(REPORT)

    # WHEN the user asks eu-west-1 for its status, then cancels it there
    in_region(monkeypatch, WEST)
    client = connected(EAST_USER)
    status = client.send({"action": "status", "request_id": "r-1"})
    cancelled = client.send({"action": "cancel", "request_id": "r-1"})

    # THEN both are answered from us-east-1's table, where the cancel is decided
    assert status["type"] == "status" and status["request"]["status"] == PENDING
    assert cancelled["request"]["status"] == "CANCELLED"
    assert stored(EAST, EAST_USER)["status"] == {"S": "CANCELLED"}
    assert stored(WEST, EAST_USER) is None


def subscribers_in(region: str, user: str, request_id: str = "r-1") -> list[str]:
    """The connections `region`'s replica of the subscriptions table has for a request."""
    answer = boto3.client("dynamodb", region_name=region).query(
        TableName=TABLES[config.SUBSCRIPTIONS_TABLE],
        KeyConditionExpression="request_key = :key",
        ExpressionAttributeValues={":key": {"S": request_key(owner_key("t1", user), request_id)}},
        ConsistentRead=True,
    )
    return [item["connection_id"]["S"] for item in answer["Items"]]


@pytest.mark.parametrize("subscribed_by", ["subscribe", "repeat"])
def test_a_subscription_from_another_region_is_stored_where_the_request_is_decided(
    two_regions, monkeypatch, subscribed_by
):
    # GIVEN a request created in us-east-1, not replicated to eu-west-1
    in_region(monkeypatch, EAST)
    connected(EAST_USER).send(REPORT)

    # WHEN a connection in eu-west-1 subscribes to it, or sends the same request again
    in_region(monkeypatch, WEST)
    client = Client(f"conn-{EAST_USER}-west", user=EAST_USER, tenant="t1")
    client.connect()
    if subscribed_by == "subscribe":
        client.send({"action": "subscribe", "request_id": "r-1"})
    else:
        assert client.send(REPORT)["type"] == "acknowledgment"

    # THEN the subscription is in us-east-1's table, where the request's runner reads
    # its subscribers after writing its end: a complete cannot slip past it while the
    # subscription replicates
    assert subscribers_in(EAST, EAST_USER) == [client.connection_id]
    assert subscribers_in(WEST, EAST_USER) == []
    in_region(monkeypatch, EAST)
    found = store.subscribers(owner_key("t1", EAST_USER), "r-1")
    assert [s.connection_id for s in found] == [client.connection_id]


def stalled_in_east(monkeypatch: pytest.MonkeyPatch) -> tuple[int, Any]:
    """A request us-east-1 created and never picked up, replicated to eu-west-1; its due time."""
    in_region(monkeypatch, EAST)
    connected(EAST_USER).send(REPORT)
    old = store.get_request(owner_key("t1", EAST_USER), "r-1")
    replicate(EAST, WEST, EAST_USER)
    return int(stored(EAST, EAST_USER)["due_at"]["N"]), old


def beat_seen_in_west(region: str, at_ms: int) -> None:
    """`region`'s heartbeat, as eu-west-1's replica of the connections table has it."""
    boto3.client("dynamodb", region_name=WEST).put_item(
        TableName=TABLES[config.CONNECTIONS_TABLE],
        Item={
            "connection_id": {"S": heartbeats.heartbeat_key(region)},
            "region": {"S": region},
            "beat_at": {"N": str(at_ms)},
        },
    )


def west_sweep(now: int) -> Any:
    settings = runtime.current().settings
    return sweep(
        WEST,
        runtime.current().delivery,
        now,
        shards=settings.due_shards,
        regions=settings.regions,
        takeover=settings.takeover,
    )


def test_a_stopped_region_s_stalled_request_is_taken_over_at_its_decider(two_regions, monkeypatch):
    # GIVEN us-east-1 stopped (no heartbeat seen) with a request past its due time and the grace
    due_at, old = stalled_in_east(monkeypatch)
    in_region(monkeypatch, WEST)
    grace_ms = int(runtime.current().settings.takeover_grace_s * 1000)

    # WHEN eu-west-1's sweeper runs
    report = west_sweep(due_at + grace_ms)

    # THEN the request is taken over in one write at us-east-1's table (its decider):
    # eu-west-1 runs it now (its stream filter takes it), re-driven, at epoch 1
    assert report.taken_over == ["r-1"]
    item = stored(EAST, EAST_USER)
    assert item["origin_region"] == {"S": WEST} and item["epoch"] == {"N": "1"}
    assert item["status"] == {"S": PENDING}
    assert item["due_region"]["S"].split("#")[0] == WEST
    assert int(item["due_at"]["N"]) == due_at + grace_ms + PICKUP_TIMEOUT_MS
    # and eu-west-1 wrote its own heartbeat
    assert any(
        i["connection_id"]["S"] == heartbeats.heartbeat_key(WEST)
        for i in boto3.client("dynamodb", region_name=WEST).scan(
            TableName=TABLES[config.CONNECTIONS_TABLE]
        )["Items"]
    )

    # WHEN us-east-1 comes back and its processor claims the request as it read it before
    in_region(monkeypatch, EAST)
    # THEN its claim carries the old epoch and is refused at the decider
    assert not store.claim_request(old, due_at, due_at + 60_000)

    # while eu-west-1's processor, which reads the request at its decider, claims it
    in_region(monkeypatch, WEST)
    taken = store.get_request(owner_key("t1", EAST_USER), "r-1")
    assert taken.fence_epoch == 1
    assert store.claim_request(taken, due_at, due_at + 60_000)
    assert stored(EAST, EAST_USER)["status"] == {"S": "PROCESSING"}


def test_nothing_is_taken_over_while_the_region_s_heartbeat_is_fresh(two_regions, monkeypatch):
    due_at, _ = stalled_in_east(monkeypatch)
    in_region(monkeypatch, WEST)
    now = due_at + 10 * 60_000
    beat_seen_in_west(EAST, now - 60_000)

    report = west_sweep(now)

    assert report.taken_over == []
    item = stored(EAST, EAST_USER)
    assert item["origin_region"] == {"S": EAST} and "epoch" not in item


def test_nothing_is_taken_over_before_its_due_time_and_the_grace(two_regions, monkeypatch):
    due_at, _ = stalled_in_east(monkeypatch)
    in_region(monkeypatch, WEST)

    report = west_sweep(due_at + 1_000)

    assert report.taken_over == []
    assert stored(EAST, EAST_USER)["origin_region"] == {"S": EAST}


def test_a_running_request_is_not_taken_over_before_its_lease_ends(two_regions, monkeypatch):
    # GIVEN a request us-east-1 claimed with a long lease: it stays due at its pickup
    # time, but its worker runs on (us-east-1's heartbeat only reads stale: its
    # sweeper fails, or the heartbeat replicates late)
    in_region(monkeypatch, EAST)
    connected(EAST_USER).send(REPORT)
    item = store.get_request(owner_key("t1", EAST_USER), "r-1")
    due_at = int(item.due_at)
    lease_ends = due_at + 15 * 60_000
    assert store.claim_request(item, due_at - 1_000, lease_ends)
    replicate(EAST, WEST, EAST_USER)
    in_region(monkeypatch, WEST)
    grace_ms = int(runtime.current().settings.takeover_grace_s * 1000)

    # WHEN eu-west-1's sweeper runs past the pickup time and the grace, within the lease
    report = west_sweep(due_at + grace_ms + 60_000)

    # THEN the run is left alone: no takeover fences off a live worker
    assert report.taken_over == []
    assert stored(EAST, EAST_USER)["status"] == {"S": "PROCESSING"}
    assert "epoch" not in stored(EAST, EAST_USER)
    # and once the lease and the grace have passed, it is taken over
    assert west_sweep(lease_ends + grace_ms).taken_over == ["r-1"]


def test_a_decider_that_does_not_answer_neither_stops_the_own_sweep_nor_is_asked_twice(
    two_regions, monkeypatch
):
    # GIVEN two stalled requests of a stopped us-east-1, whose table does not answer
    # either, and a stalled request of eu-west-1's own
    due_at, _ = stalled_in_east(monkeypatch)
    connected(EAST_USER).send({**REPORT, "id": "r-2"})
    replicate(EAST, WEST, EAST_USER, "r-2")
    in_region(monkeypatch, WEST)
    connected(WEST_USER).send(REPORT)
    asked: list[str] = []

    def unreachable(item: Any, *args: Any, **kwargs: Any) -> bool:
        asked.append(item.request_id)
        raise store.StoreUnavailable("us-east-1 does not answer")

    monkeypatch.setattr(store, "take_over_request", unreachable)
    grace_ms = int(runtime.current().settings.takeover_grace_s * 1000)

    # WHEN eu-west-1's sweeper runs past every due time
    report = west_sweep(due_at + PICKUP_TIMEOUT_MS + grace_ms + 60_000)

    # THEN its own request was swept, us-east-1 was asked once, and the run failed only that
    assert report.redriven == ["r-1"]
    assert len(asked) == 1
    assert len(report.failed) == 1 and report.taken_over == []


@pytest.mark.parametrize("moved_by", ["claim", "takeover"])
def test_a_cancel_is_not_lost_to_a_move_between_its_read_and_its_write(
    two_regions, monkeypatch, moved_by
):
    # GIVEN a pending request of us-east-1 (replicated to eu-west-1, us-east-1 stopped)
    due_at, _ = stalled_in_east(monkeypatch)
    region = EAST if moved_by == "claim" else WEST
    in_region(monkeypatch, region)
    client = Client(f"conn-{EAST_USER}-{region}", user=EAST_USER, tenant="t1")
    client.connect()
    read_request = store.get_request
    moved: list[str] = []

    def read_then_move(owner: str, request_id: str, **options: Any) -> Any:
        item = read_request(owner, request_id, **options)
        if not moved:
            # just after the cancel read it, a worker claims it, or eu-west-1 takes it over
            moved.append(moved_by)
            if moved_by == "claim":
                assert store.claim_request(read_request(owner, request_id), due_at, due_at + 60_000)
            else:
                grace_ms = int(runtime.current().settings.takeover_grace_s * 1000)
                assert west_sweep(due_at + grace_ms).taken_over == ["r-1"]
        return item

    monkeypatch.setattr(store, "get_request", read_then_move)

    # WHEN the user cancels it
    answer = client.send({"action": "cancel", "request_id": "r-1"})

    # THEN the cancel took effect on the request as it had become
    item = stored(EAST, EAST_USER)
    if moved_by == "claim":
        assert item["status"] == {"S": "PROCESSING"} and item["cancel_requested"] == {"BOOL": True}
    else:
        assert item["status"] == {"S": "CANCELLED"} and answer["request"]["status"] == "CANCELLED"


def test_a_taker_s_sweeper_decides_on_the_request_as_its_decider_has_it(two_regions, monkeypatch):
    # GIVEN a request eu-west-1 took over from us-east-1, claimed by eu-west-1's worker,
    # which then persisted progress up to seq 10 at us-east-1 (its decider) before dying;
    # eu-west-1's own replica has the claim but not that progress yet
    due_at, _ = stalled_in_east(monkeypatch)
    in_region(monkeypatch, WEST)
    grace_ms = int(runtime.current().settings.takeover_grace_s * 1000)
    assert west_sweep(due_at + grace_ms).taken_over == ["r-1"]
    taken = store.get_request(owner_key("t1", EAST_USER), "r-1")
    lease_ends = due_at + grace_ms + 1_000
    assert store.claim_request(taken, due_at + grace_ms, lease_ends)
    replicate(EAST, WEST, EAST_USER)
    assert store.save_progress(
        taken,
        int(taken.attempt),
        percentage=50.0,
        message="half",
        seq=10,
        checkpoint=None,
        now_ms=lease_ends - 500,
    )

    # WHEN eu-west-1's sweeper re-drives it after the lease
    report = west_sweep(int(stored(WEST, EAST_USER)["due_at"]["N"]) + 1)

    # THEN the next attempt goes on past the seq persisted at the decider, not the one
    # eu-west-1's replica showed: no client sees a seq twice
    assert report.redriven == ["r-1"]
    assert int(stored(EAST, EAST_USER)["seq"]["N"]) == 10 + MAX_UNPERSISTED_MESSAGES


def test_a_connection_in_another_region_is_reached_through_its_own_region_s_api(
    two_regions, monkeypatch
):
    # GIVEN a request sent from a connection to us-east-1's API
    in_region(monkeypatch, EAST)
    owner = connected(EAST_USER)
    owner.send(REPORT)

    # WHEN the same user, connected to eu-west-1, cancels it there
    api = in_region(monkeypatch, WEST)
    other = Client("conn-west", user=EAST_USER, tenant="t1")
    other.connect()
    other.send({"action": "cancel", "request_id": "r-1"})

    # THEN eu-west-1 posts the owner's `complete` to us-east-1's management API
    [(endpoint, _, complete)] = [p for p in api.posts if p[1] == owner.connection_id]
    assert ".execute-api.us-east-1.amazonaws.com/" in endpoint
    assert complete["type"] == "complete" and complete["status"] == "CANCELLED"


def test_a_stopped_region_s_waiting_request_moves_to_the_taker_s_poller(two_regions, monkeypatch):
    # GIVEN a request us-east-1 handed to an external system, polled by us-east-1's poller
    in_region(monkeypatch, EAST)
    connected(EAST_USER).send(REPORT)
    item = store.get_request(owner_key("t1", EAST_USER), "r-1")
    assert store.claim_request(item, 1_000, 60_000)
    poll_at = 2_000
    assert store.wait_request(
        item,
        int(item.attempt),
        state={"job": "j-1"},
        poll_at=poll_at,
        poll_interval_ms=1_000,
        deadline_at=10_000_000,
        seq=1,
        now_ms=1_500,
    )
    replicate(EAST, WEST, EAST_USER)

    # WHEN us-east-1 stopped and eu-west-1's sweeper runs past the poll time and the grace
    in_region(monkeypatch, WEST)
    grace_ms = int(runtime.current().settings.takeover_grace_s * 1000)
    report = west_sweep(poll_at + grace_ms)

    # THEN it stays WAITING, due at the same time in eu-west-1's poller partition, at epoch 1
    assert report.taken_over == ["r-1"]
    moved = stored(EAST, EAST_USER)
    assert moved["status"] == {"S": "WAITING"} and moved["epoch"] == {"N": "1"}
    assert moved["origin_region"] == {"S": WEST}
    assert moved["due_region"]["S"].startswith(WEST) and moved["due_region"]["S"].endswith(
        "#waiting"
    )
    assert int(moved["due_at"]["N"]) == poll_at


def test_a_single_region_sweeper_writes_no_heartbeat(aws):
    from streamer.entry import sweeper as sweeper_entry
    from tests.functional.helpers import items

    sweeper_entry.handler({}, None)

    keys = [i["connection_id"]["S"] for i in items(config.CONNECTIONS_TABLE)]
    assert not any(key.startswith(heartbeats.PREFIX) for key in keys)


def west_stream_event() -> dict[str, Any]:
    """Every record of eu-west-1's requests stream, shaped as the event source mapping does."""
    from local.streams import lambda_record

    dynamodb = boto3.client("dynamodb", region_name=WEST)
    arn = dynamodb.describe_table(TableName=TABLES[config.REQUESTS_TABLE])["Table"][
        "LatestStreamArn"
    ]
    streams = boto3.client("dynamodbstreams", region_name=WEST)
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += [
            lambda_record(r, arn) for r in streams.get_records(ShardIterator=iterator)["Records"]
        ]
    return {"Records": records}


def test_the_taker_s_processor_runs_the_request_from_its_own_stream_once(two_regions, monkeypatch):
    from streamer.entry import processor
    from tests.conftest import FakeContext

    # GIVEN eu-west-1 took over a stalled us-east-1 request, and the takeover replicated
    due_at, _ = stalled_in_east(monkeypatch)
    api = in_region(monkeypatch, WEST)
    west_sweep(due_at + int(runtime.current().settings.takeover_grace_s * 1000))
    replicate(EAST, WEST, EAST_USER)

    # WHEN eu-west-1's processor gets its stream: the first copy (us-east-1's) and the taken one
    answer = processor.handler(west_stream_event(), FakeContext())

    # THEN it runs the request once, deciding every write at us-east-1's table, at epoch 1
    assert answer == {"batchItemFailures": []}
    item = stored(EAST, EAST_USER)
    assert item["status"] == {"S": "COMPLETED"} and item["epoch"] == {"N": "1"}
    assert item["attempt"] == {"N": "1"}
    completes = [m for _, _, m in api.posts if m["type"] == "complete"]
    assert len(completes) == 1 and completes[0]["status"] == "COMPLETED"
