"""Tenant isolation, tenant-wide permissions, watch tokens, rate limits, field limits."""

from __future__ import annotations

import time

import jwt
import pytest

from streamer import config, runtime, watch
from streamer.entry import authorizer
from streamer.events import Identity
from tests.conftest import FakeContext, load_event
from tests.functional import helpers
from tests.functional.helpers import Client

SECRET = "watch-secret-for-tests-0123456789abcdef"


@pytest.fixture
def secured(aws, monkeypatch):
    monkeypatch.setenv(config.APP_MODULE, "tests.functional.apps")
    monkeypatch.setenv(config.WATCH_TOKEN_SECRET, SECRET)
    runtime.reset()


@pytest.fixture
def alice(secured, management) -> Client:
    client = Client("conn-alice", user="alice", tenant="t1")
    client.connect()
    client.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 2}})
    return client


def colleague(permissions: str = "") -> Client:
    client = Client("conn-carol", user="carol", tenant="t1", permissions=permissions)
    client.connect()
    return client


# Tenant-wide permissions


def test_a_colleague_without_permission_cannot_see_a_request(alice):
    carol = colleague()
    answer = carol.send({"action": "status", "request_id": "r-1", "user_id": "alice"})
    unknown = carol.send({"action": "status", "request_id": "r-9", "user_id": "alice"})
    assert answer["error"] == unknown["error"] | {"details": {"request_id": "r-1"}}
    assert answer["error"]["code"] == "NOT_FOUND"


def test_a_colleague_with_read_permission_can_status_and_subscribe_but_not_cancel(alice):
    carol = colleague("requests:read:tenant")

    status = carol.send({"action": "status", "request_id": "r-1", "user_id": "alice"})
    snapshot = carol.send({"action": "subscribe", "request_id": "r-1", "user_id": "alice"})
    cancel = carol.send({"action": "cancel", "request_id": "r-1", "user_id": "alice"})

    assert status["request"]["request_id"] == "r-1"
    assert snapshot["type"] == "progress"
    assert cancel["error"]["code"] == "FORBIDDEN"
    [item] = helpers.requests()
    assert item["status"] == {"S": "PENDING"}


def test_a_colleague_with_cancel_permission_can_cancel(alice):
    carol = colleague("requests:read:tenant,requests:cancel:tenant")
    answer = carol.send({"action": "cancel", "request_id": "r-1", "user_id": "alice"})
    assert answer["request"]["status"] == "CANCELLED"


def test_permissions_never_cross_tenants(alice):
    mallory = Client("conn-m", user="alice", tenant="t2", permissions="requests:read:tenant")
    mallory.connect()
    answer = mallory.send({"action": "status", "request_id": "r-1", "user_id": "alice"})
    assert answer["error"]["code"] == "NOT_FOUND"


# Watch tokens


def watch_client(token: str) -> Client:
    event = load_event("authorizer_connect")
    event["queryStringParameters"] = {"token": token}
    policy = authorizer.handler(event, FakeContext())
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    client = Client("conn-watch")
    client.authorizer = {"principalId": policy["principalId"], **policy["context"]}
    client.connect()
    return client


@pytest.fixture
def user_key(signers, monkeypatch):
    key = signers["rsa"].private
    monkeypatch.setenv(config.JWT_PUBLIC_KEY, signers["rsa"].public_pem)
    runtime.reset()
    authorizer.reset()
    return key


def test_a_watch_token_follows_its_request_and_nothing_else(alice, user_key):
    # GIVEN alice minted a watch token for r-1, and has a second request r-2
    alice.send({"action": "generate_report", "id": "r-2", "payload": {"pages": 2}})
    minted = alice.send({"action": "watch", "request_id": "r-1"})
    assert minted["type"] == "watch_token" and minted["request_id"] == "r-1"
    assert minted["expires_at"] > time.time() * 1000

    # WHEN a connection opens with it
    viewer = watch_client(minted["token"])

    # THEN it may follow r-1 only
    assert viewer.send({"action": "status", "request_id": "r-1"})["type"] == "status"
    assert viewer.send({"action": "subscribe", "request_id": "r-1"})["type"] == "progress"
    assert viewer.send({"action": "status", "request_id": "r-2"})["error"]["code"] == "NOT_FOUND"
    for forbidden in (
        {"action": "echo", "payload": {}},
        {"action": "generate_report", "payload": {"pages": 1}},
        {"action": "cancel", "request_id": "r-1"},
        {"action": "watch", "request_id": "r-1"},
    ):
        assert viewer.send(forbidden)["error"]["code"] == "FORBIDDEN"
    assert len(helpers.requests()) == 2


@pytest.mark.parametrize(
    "claims, secret",
    [
        ({"exp": -60}, SECRET),  # expired
        ({}, "another-secret-another-secret-0123"),  # forged
        ({"aud": "streamer"}, SECRET),  # not a watch audience
    ],
)
def test_bad_watch_tokens_are_refused(secured, user_key, claims, secret):
    now = int(time.time())
    body = {
        "aud": watch.AUDIENCE,
        "sub": "alice",
        "tenant_id": "t1",
        "request_id": "r-1",
        "iat": now,
        "exp": now + 600,
    }
    body.update({k: (now + v if k == "exp" else v) for k, v in claims.items()})
    event = load_event("authorizer_connect")
    event["queryStringParameters"] = {"token": jwt.encode(body, secret, algorithm="HS256")}
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.handler(event, FakeContext())


def test_without_a_secret_hs256_tokens_are_refused_and_watch_is_forbidden(
    aws, management, user_key
):
    token, _ = watch.mint(SECRET, Identity("alice", "t1"), "alice", "r-1", 600)
    event = load_event("authorizer_connect")
    event["queryStringParameters"] = {"token": token}
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorizer.handler(event, FakeContext())
    client = Client("conn-a", user="alice", tenant="t1")
    client.connect()
    client.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 2}})
    assert client.send({"action": "watch", "request_id": "r-1"})["error"]["code"] == "FORBIDDEN"


# Rate limits


def test_more_messages_than_the_limit_in_one_second_are_rate_limited(
    secured, management, monkeypatch
):
    monkeypatch.setenv(config.RATE_LIMIT_PER_S, "3")
    runtime.reset()
    import streamer.router

    clock = {"now": 1_000_000}
    monkeypatch.setattr(streamer.router, "now_ms", lambda: clock["now"])
    client = Client("conn-a", user="alice", tenant="t1")
    client.connect()

    answers = [client.send({"action": "echo", "id": f"e{i}"}) for i in range(4)]
    clock["now"] += 1000
    after = client.send({"action": "echo"})

    assert [a["type"] for a in answers] == ["response"] * 3 + ["error"]
    assert answers[3]["error"]["code"] == "RATE_LIMITED"
    assert answers[3]["error"]["retryable"] is True and answers[3]["request_id"] == "e3"
    # a token comes back every 333.3 ms (rounded up: a retry then is admitted); the
    # bucket holds one second's worth by default
    assert answers[3]["error"]["details"] == {
        "limit_per_second": 3,
        "burst": 3,
        "retry_after_ms": 334,
    }
    assert after["type"] == "response"


def test_a_user_may_have_only_so_many_requests_running(secured, management, monkeypatch):
    monkeypatch.setenv(config.MAX_ACTIVE_REQUESTS, "2")
    runtime.reset()
    client = Client("conn-a", user="alice", tenant="t1")
    client.connect()
    for request_id in ("r-1", "r-2"):
        client.send({"action": "generate_report", "id": request_id, "payload": {"pages": 1}})

    third = client.send({"action": "generate_report", "id": "r-3", "payload": {"pages": 1}})
    repeat = client.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 1}})
    client.send({"action": "cancel", "request_id": "r-1"})
    after_cancel = client.send({"action": "generate_report", "id": "r-3", "payload": {"pages": 1}})

    assert third["error"]["code"] == "RATE_LIMITED" and third["error"]["retryable"] is True
    assert repeat["type"] == "acknowledgment"
    assert after_cancel["type"] == "acknowledgment"
    other_user = Client("conn-b", user="bob", tenant="t1")
    other_user.connect()
    assert other_user.send({"action": "generate_report", "payload": {"pages": 1}})["type"] == (
        "acknowledgment"
    )


def test_metadata_past_its_limits_is_refused(secured, management):
    client = Client("conn-a", user="alice", tenant="t1")
    client.connect()
    too_many = {f"k{i}": "v" for i in range(33)}
    too_long = {"k": "v" * 1025}
    for metadata in (too_many, too_long):
        answer = client.send({"action": "echo", "metadata": metadata})
        assert answer["error"]["code"] == "PAYLOAD_TOO_LARGE"
