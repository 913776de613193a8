"""Callbacks reach each connection through the API it came through, custom domain or not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamer import aws as aws_clients
from streamer import config
from streamer.entry import connect, router
from tests.conftest import REGION, FakeContext, FakeManagementApi, load_event
from tests.functional import helpers
from tests.functional.helpers import Stream, identity_context


def _context(event: dict[str, Any], connection_id: str, user: str, api_id: str, domain: str):
    event["requestContext"].update(
        connectionId=connection_id,
        authorizer=identity_context(user, "tenant-1"),
        apiId=api_id,
        domainName=domain,
        stage="prod",
    )
    event["headers"] = {**event.get("headers", {}), "Host": domain}
    return event


def connect_through(connection_id: str, user: str, api_id: str, domain: str) -> dict:
    event = _context(load_event("connect"), connection_id, user, api_id, domain)
    return connect.handler(event, FakeContext())


def send_through(connection_id: str, user: str, api_id: str, domain: str, message: dict) -> dict:
    event = _context(load_event("message"), connection_id, user, api_id, domain)
    event["body"] = json.dumps(message)
    answer = router.handler(event, FakeContext())
    return json.loads(answer["body"])


def stored_endpoint(connection_id: str) -> str:
    [record] = [c for c in helpers.connections() if c["connection_id"]["S"] == connection_id]
    return record["endpoint"]["S"]


@pytest.fixture
def posts(monkeypatch: pytest.MonkeyPatch) -> FakeManagementApi:
    """Management API clients the runtime makes, recording the endpoint each post went to."""
    api = FakeManagementApi()
    regions: dict[str, str] = {}
    real = aws_clients.create_client

    def create_client(service_name: str, **kwargs: Any) -> Any:
        if service_name != "apigatewaymanagementapi":
            return real(service_name, **kwargs)
        regions[kwargs["endpoint_url"]] = kwargs["region_name"]
        return api.factory(kwargs["endpoint_url"])

    monkeypatch.setattr(aws_clients, "create_client", create_client)
    api.regions = regions  # type: ignore[attr-defined]
    return api


def test_connect_behind_a_custom_domain_stores_the_execute_api_endpoint(aws):
    # GIVEN a $connect that came through the custom domain ws.example.com (stage prod)
    assert connect_through("c-1=", "alice", "abcdef1234", "ws.example.com") == {"statusCode": 200}

    # THEN callbacks go to the API's own endpoint, not to https://ws.example.com/prod
    assert stored_endpoint("c-1=") == (
        f"https://abcdef1234.execute-api.{REGION}.amazonaws.com/prod"
    )


def test_a_local_override_replaces_only_its_own_apis_endpoint(aws, monkeypatch):
    # GIVEN the local stack's override for its API "local"
    monkeypatch.setenv(config.MANAGEMENT_ENDPOINT, "local=http://127.0.0.1:9999/")

    connect_through("local-1=", "alice", "local", "127.0.0.1")
    connect_through("aws-1=", "bob", "abcdef1234", "abcdef1234.execute-api.us-east-1.amazonaws.com")

    # THEN the local API's connection is reached locally, the other through AWS
    assert stored_endpoint("local-1=") == "http://127.0.0.1:9999"
    assert (
        stored_endpoint("aws-1=") == "https://abcdef1234.execute-api.us-east-1.amazonaws.com/prod"
    )


def test_an_override_for_every_api_is_refused(aws, monkeypatch):
    # A bare URL would send every API's callbacks to one place.
    monkeypatch.setenv(config.MANAGEMENT_ENDPOINT, "http://127.0.0.1:9999")
    with pytest.raises(ValueError, match="API_ID="):
        connect_through("c-1=", "alice", "abcdef1234", "ws.example.com")
    assert helpers.connections() == []


def test_two_apis_each_reach_their_own_connections(test_app, monkeypatch, posts):
    # GIVEN two APIs: "east" played locally, "west1api00" behind a custom domain on AWS
    monkeypatch.setenv(config.MANAGEMENT_ENDPOINT, "east=http://127.0.0.1:8001")
    connect_through("a=", "alice", "east", "127.0.0.1")
    connect_through("b=", "bob", "west1api00", "ws.example.com")

    # WHEN each starts an async report and the processor runs them
    for connection, user, api_id, domain in (
        ("a=", "alice", "east", "127.0.0.1"),
        ("b=", "bob", "west1api00", "ws.example.com"),
    ):
        ack = send_through(
            connection,
            user,
            api_id,
            domain,
            {"action": "generate_report", "id": f"r-{user}", "payload": {"pages": 1}},
        )
        assert ack["type"] == "acknowledgment"
    Stream().run()

    # THEN each connection's messages went to its own API, and both are still connected
    west = f"https://west1api00.execute-api.{REGION}.amazonaws.com/prod"
    by_connection = {(endpoint, c) for endpoint, c, _ in posts.posts}
    assert by_connection == {("http://127.0.0.1:8001", "a="), (west, "b=")}
    assert {m["type"] for m in posts.messages("a=")} >= {"complete"}
    assert {m["type"] for m in posts.messages("b=")} >= {"complete"}
    assert posts.regions[west] == REGION  # type: ignore[attr-defined]
    assert {c["connection_id"]["S"] for c in helpers.connections()} == {"a=", "b="}
