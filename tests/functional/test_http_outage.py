"""The HTTP API during a store outage: 503 with `Retry-After`, within the router's budget.

DynamoDB is a local port where nothing listens (botocore's
`EndpointConnectionError`), reached through `AWS_ENDPOINT_URL_DYNAMODB` as
the local stack points the functions at its DynamoDB.
"""

from __future__ import annotations

import json
from typing import Any

from streamer import aws, runtime, store
from streamer.entry import http as http_entry
from streamer.models import RequestItem, owner_key
from streamer.router import Router
from tests.conftest import FakeContext, load_event


def post_report() -> dict[str, Any]:
    event = load_event("http_post_requests")
    event["body"] = json.dumps(
        {"action": "generate_report", "id": "r-outage", "payload": {"pages": 1, "page_ms": 0}}
    )
    return http_entry.handler(event, FakeContext())


def a_request(status: str = "PROCESSING") -> RequestItem:
    owner = owner_key("tenant-1", "user-a")
    return RequestItem(
        f"{owner}#r-1",
        owner=owner,
        request_id="r-1",
        tenant_id="tenant-1",
        user_id="user-a",
        action="generate_report",
        status=status,
        origin_region="us-east-1",
        created_at=1,
        updated_at=1,
        ttl=1,
        progress=0,
        seq=1,
    )


def long_poll(wait_s: int = 2) -> dict[str, Any]:
    event = load_event("http_get_request")
    event["queryStringParameters"] = {"wait": str(wait_s)}
    return http_entry.handler(event, FakeContext())


def test_post_during_a_store_outage_is_503_with_retry_after_in_seconds(dynamodb_down):
    # WHEN a request is started while DynamoDB cannot be reached
    response = post_report()

    # THEN the caller is told the service is unavailable and when to try again (RFC 9110
    # section 15.6.4): 503, Retry-After in whole seconds, the protocol's UNAVAILABLE body
    body = json.loads(response["body"])
    assert response["statusCode"] == 503, body
    assert body["error"]["code"] == "UNAVAILABLE"
    assert body["request_id"] == "r-outage"
    retry_after_ms = body["error"]["details"]["retry_after_ms"]
    assert response["headers"]["Retry-After"] == str(-(-retry_after_ms // 1000))


def test_an_outage_during_a_long_poll_is_503_unavailable(dynamodb_down, monkeypatch):
    # GIVEN a request the first read found, and then DynamoDB cannot be reached
    monkeypatch.setattr(Router, "readable_request", lambda self, caller, request_id: a_request())

    # WHEN its owner long-polls it
    response = long_poll()

    # THEN the outage is answered as one, not as an internal error
    body = json.loads(response["body"])
    assert response["statusCode"] == 503, body
    assert body["error"]["code"] == "UNAVAILABLE"
    assert body["error"]["retryable"] is True
    assert int(response["headers"]["Retry-After"]) >= 1


def test_the_long_poll_re_reads_under_the_routers_call_budget(aws_env, monkeypatch):
    # GIVEN a request that changes on its second read
    budgets = []

    def get_request(owner: str, request_id: str) -> RequestItem:
        budgets.append(aws.current_budget())
        return a_request("COMPLETED")

    monkeypatch.setattr(Router, "readable_request", lambda self, caller, request_id: a_request())
    monkeypatch.setattr(store, "get_request", get_request)
    runtime.reset()

    # WHEN its owner long-polls it
    response = long_poll()

    # THEN the re-read ran under the router's budget, not the patient one
    assert response["statusCode"] == 200, response
    assert json.loads(response["body"])["status"] == "COMPLETED"
    assert budgets == [aws.ROUTER]
