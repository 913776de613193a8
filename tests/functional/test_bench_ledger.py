"""The scale model's recording (bench.counting's ledger): what each DynamoDB call of a real
request spent, on which table, index and partition key value."""

from __future__ import annotations

import json

import pytest

from bench import counting
from streamer import aws, config, keys, runtime
from streamer.entry import processor
from streamer.models import owner_key
from tests.conftest import FakeContext
from tests.functional.helpers import Client, Stream


@pytest.fixture
def ledger(test_app, management, tmp_path, monkeypatch):
    """A meter with its ledger on, on every client the runtime makes from now on."""
    path = tmp_path / "ledger.jsonl"
    meter = counting.Meter(path, estimate=True)
    session = aws.session()
    for event, handler in meter.handlers():
        session.register(event, handler)
    # Clients made before the meter was registered would not carry it (`aws.share_with_pynamodb`).
    monkeypatch.setitem(session.__dict__, "_streamer_pynamodb_clients", {})
    runtime.reset()
    yield path
    for event, handler in meter.handlers():
        session.unregister(event, handler)


def read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_async_request_is_recorded_as_a_put_a_claim_and_a_finish(ledger):
    # GIVEN a connected client
    alice = Client("conn-alice", user="alice", tenant="t1")
    alice.connect()

    # WHEN it sends an async request, and the processor runs it to its end
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 1, "page_ms": 0}})
    Stream().run()

    # THEN the requests table took three writes, each recorded with the request's key and
    # the index writes it caused. With the per-user cap on (the default), the put enters
    # the cap's index only (that index finds it if it stalls: `keys.watched_by`); this
    # claim's lease ends before the pickup time, so it moves the due time the cap's index
    # projects (an update there); the finish leaves it. The due index is never written.
    key = keys.request_key(owner_key("t1", "alice"), "r-1")
    lines = read(ledger)
    writes = [x for x in lines if x["table"] == "requests" and x["op"] in counting.WRITES]
    assert [(w["op"], w["key"]) for w in writes] == [
        ("PutItem", key),
        ("UpdateItem", key),
        ("UpdateItem", key),
    ]
    assert [w["index_units"] for w in writes] == [
        {"by_active_owner": 1},
        {"by_active_owner": 1},
        {"by_active_owner": 1},
    ]
    assert writes[0]["index_keys"] == {"by_active_owner": owner_key("t1", "alice")}
    # and the per-user cap's count is a query on the owner's key of its index
    [count] = [x for x in lines if x["op"] == "Query" and x["index"] == "by_active_owner"]
    assert count["key"] == owner_key("t1", "alice")


def test_with_the_per_user_cap_an_async_request_is_3_writes_and_5_write_units(ledger):
    # GIVEN the per-user cap on (the default), and a processor whose lease ends after the
    # pickup time
    alice = Client("conn-alice", user="alice", tenant="t1")
    alice.connect()

    # WHEN an async request runs to its end
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 1, "page_ms": 0}})
    processor.handler(Stream().next_event(), FakeContext(remaining_ms=900_000))

    # THEN the put enters the cap's index, the claim writes no index, the finish leaves it
    writes = [x for x in read(ledger) if x["table"] == "requests" and x["op"] in counting.WRITES]
    assert [w["index_units"] for w in writes] == [
        {"by_active_owner": 1},
        {},
        {"by_active_owner": 1},
    ]
    assert sum(w["units"] + sum(w["index_units"].values()) for w in writes) == 5


def test_without_the_per_user_cap_an_async_request_is_3_writes_and_5_write_units(
    ledger, monkeypatch
):
    # GIVEN no per-user cap, and a processor whose lease ends after the pickup time
    monkeypatch.setenv(config.MAX_ACTIVE_REQUESTS, "0")
    runtime.reset()
    alice = Client("conn-alice", user="alice", tenant="t1")
    alice.connect()

    # WHEN an async request runs to its end
    alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 1, "page_ms": 0}})
    processor.handler(Stream().next_event(), FakeContext(remaining_ms=900_000))

    # THEN the put enters the due index, the claim leaves it alone, the finish leaves it
    writes = [x for x in read(ledger) if x["table"] == "requests" and x["op"] in counting.WRITES]
    assert [w["index_units"] for w in writes] == [{"by_due": 1}, {}, {"by_due": 1}]
    assert sum(w["units"] + sum(w["index_units"].values()) for w in writes) == 5
