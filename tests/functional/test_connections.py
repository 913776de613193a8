"""Connect and disconnect with the events API Gateway sends."""

from __future__ import annotations

from streamer import config
from streamer.entry import connect
from tests.conftest import FakeContext, load_event
from tests.functional import helpers
from tests.functional.helpers import Client


def test_connect_stores_the_authorizers_identity_and_the_management_endpoint(aws):
    # WHEN API Gateway delivers the documented CONNECT event
    assert connect.handler(load_event("connect"), FakeContext()) == {"statusCode": 200}

    # THEN the connection is stored with identity, endpoint and a TTL past 2 hours
    [record] = helpers.connections()
    assert record["connection_id"] == {"S": "FDmBIeapIAMCIQg="}
    assert record["user_id"] == {"S": "user-a"} and record["tenant_id"] == {"S": "tenant-1"}
    assert record["user_key"] == {"S": "tenant-1#user-a"}
    assert record["endpoint"] == {
        "S": "https://abcdef1234.execute-api.us-east-1.amazonaws.com/prod"
    }
    assert record["permissions"] == {"SS": ["reports:write"]}
    ttl = int(record["ttl"]["N"]) - int(record["last_seen"]["N"]) // 1000
    assert 2 * 3600 < ttl <= 3 * 3600


def test_the_local_stack_overrides_the_management_endpoint_of_its_api(aws, monkeypatch):
    monkeypatch.setenv(config.MANAGEMENT_ENDPOINT, "abcdef1234=http://127.0.0.1:9999/")
    connect.handler(load_event("connect"), FakeContext())
    [record] = helpers.connections()
    assert record["endpoint"] == {"S": "http://127.0.0.1:9999"}


def test_connect_without_authorizer_context_is_refused_and_stores_nothing(aws):
    event = load_event("connect")
    del event["requestContext"]["authorizer"]
    assert connect.handler(event, FakeContext()) == {"statusCode": 401}
    assert helpers.connections() == []


def test_disconnect_deletes_the_connection_and_its_subscriptions(test_app, management):
    owner = Client("conn-owner", user="alice", tenant="t1")
    watcher = Client("conn-watch", user="alice", tenant="t1")
    owner.connect()
    watcher.connect()
    owner.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 1}})
    watcher.send({"action": "subscribe", "request_id": "r-1"})
    assert len(helpers.subscriptions()) == 1

    assert watcher.disconnect() == {"statusCode": 200}

    assert [c["connection_id"]["S"] for c in helpers.connections()] == ["conn-owner"]
    assert helpers.subscriptions() == []
    # A second DISCONNECT (API Gateway may repeat it) is harmless.
    assert watcher.disconnect() == {"statusCode": 200}
