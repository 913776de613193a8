"""Calling the entry points with AWS-shaped events, as API Gateway would."""

from __future__ import annotations

import json
from typing import Any

import boto3

from streamer import config
from streamer.entry import connect, disconnect, processor, router
from streamer.store import circuits
from tests.conftest import REGION, TABLES, FakeContext, load_event, stream_event


def identity_context(user: str, tenant: str, permissions: str = "") -> dict[str, Any]:
    return {
        "principalId": user,
        "user_id": user,
        "tenant_id": tenant,
        "permissions": permissions,
        "integrationLatency": 0,
    }


class Client:
    """One WebSocket connection, seen from the Lambda side."""

    def __init__(
        self,
        connection_id: str,
        user: str = "user-a",
        tenant: str = "tenant-1",
        permissions: str = "",
    ) -> None:
        self.connection_id = connection_id
        self.authorizer = identity_context(user, tenant, permissions)

    def connect(self) -> dict[str, Any]:
        event = load_event("connect")
        event["requestContext"].update(connectionId=self.connection_id, authorizer=self.authorizer)
        return connect.handler(event, FakeContext())

    def disconnect(self) -> dict[str, Any]:
        event = load_event("disconnect")
        event["requestContext"].update(connectionId=self.connection_id, authorizer=self.authorizer)
        return disconnect.handler(event, FakeContext())

    def send_raw(self, body: str, remaining_ms: int = 30_000) -> dict[str, Any]:
        event = load_event("message")
        event["requestContext"].update(connectionId=self.connection_id, authorizer=self.authorizer)
        event["body"] = body
        answer = router.handler(event, FakeContext(remaining_ms))
        assert answer["statusCode"] == 200
        return json.loads(answer["body"])

    def send(self, message: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self.send_raw(json.dumps(message), **kwargs)


class Stream:
    """Feeds the processor the requests table's new stream records, like the mapping."""

    def __init__(self) -> None:
        self.position: dict[str, str] = {}

    def next_event(self) -> dict[str, Any]:
        event, self.position = stream_event(self.position)
        return event

    def run(self) -> dict[str, Any]:
        return processor.handler(self.next_event(), FakeContext())


def items(table: str) -> list[dict[str, Any]]:
    client = boto3.client("dynamodb", region_name=REGION)
    return client.scan(TableName=TABLES[table])["Items"]


def requests() -> list[dict[str, Any]]:
    return items(config.REQUESTS_TABLE)


def connections() -> list[dict[str, Any]]:
    """The connection records (the table also holds the circuit breaker's items)."""
    return [
        item
        for item in items(config.CONNECTIONS_TABLE)
        if not item["connection_id"]["S"].startswith(circuits.PREFIX)
    ]


def circuit_items() -> list[dict[str, Any]]:
    """The circuit breaker's items in the connections table (`streamer.store.circuits`)."""
    return [
        item
        for item in items(config.CONNECTIONS_TABLE)
        if item["connection_id"]["S"].startswith(circuits.PREFIX)
    ]


def subscriptions() -> list[dict[str, Any]]:
    return items(config.SUBSCRIPTIONS_TABLE)
