"""The HTTP API entry point, fed with payload-format-2.0 events as API Gateway sends them.

A token reaches the function the way API Gateway passes it: the Lambda authorizer
(`streamer.entry.authorizer`) is invoked with the v2 authorizer event built from the
request, and its simple response decides (401 without a token, 403 when refused) or
becomes `requestContext.authorizer.lambda`. The event shapes are `local.http_api`'s,
the local stack's HTTP API.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest

from local import http_api
from local.management import HttpResponse
from streamer import config, runtime, watch
from streamer.entry import authorizer
from streamer.entry import http as http_entry
from streamer.events import Identity
from tests.conftest import REGION, FakeContext, load_event
from tests.functional import helpers
from tests.functional.helpers import Client

SECRET = "watch-secret-for-tests-0123456789abcdef"
WEBSOCKET_URL = "wss://abcdef1234.execute-api.us-east-1.amazonaws.com/prod"


@pytest.fixture
def user_key(aws, signers, monkeypatch) -> Any:
    """A stack with the test app, watch tokens, a WebSocket URL and a PEM user-token key."""
    key = signers["rsa"].private
    monkeypatch.setenv(config.APP_MODULE, "tests.functional.apps")
    monkeypatch.setenv(config.WATCH_TOKEN_SECRET, SECRET)
    monkeypatch.setenv(config.WEBSOCKET_URL, WEBSOCKET_URL)
    monkeypatch.setenv(config.JWT_PUBLIC_KEY, signers["rsa"].public_pem)
    monkeypatch.setenv(config.ALLOWED_TENANTS, "tenant-1")
    runtime.reset()
    authorizer.reset()
    return key


def user_token(key: Any, sub: str = "user-a", tenant: str = "tenant-1") -> str:
    now = int(time.time())
    claims = {"sub": sub, "tenant_id": tenant, "iat": now, "exp": now + 300}
    return jwt.encode(claims, key, algorithm="RS256")


def through_api_gateway(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The authorizer first, as API Gateway runs it; the function only when it allows."""
    event["requestContext"].pop("authorizer", None)
    request = http_api.authorizer_event(event, region=REGION, account_id="123456789012")
    if request is None:
        return 401, {"message": "Unauthorized"}
    decided = http_api.authorization(authorizer.handler(request, FakeContext()))
    if isinstance(decided, HttpResponse):
        return decided.status, json.loads(decided.body)
    event["requestContext"]["authorizer"] = {"lambda": decided}
    return answer_of(http_entry.handler(event, FakeContext()))


def post(body: dict[str, Any] | str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    """POST /requests; without `token`, as the sample's authorizer context (user-a)."""
    event = load_event("http_post_requests")
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    if token is None:
        return answer_of(http_entry.handler(event, FakeContext()))
    if token:
        event["headers"]["authorization"] = f"Bearer {token}"
    else:
        del event["headers"]["authorization"]
    return through_api_gateway(event)


def get(request_id: str, token: str | None, wait: str | None = None) -> tuple[int, dict]:
    event = load_event("http_get_request")
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/requests/{request_id}"
    event["pathParameters"] = {"id": request_id}
    event["queryStringParameters"] = {"wait": wait} if wait is not None else None
    if token is None:
        del event["headers"]["authorization"]
    else:
        event["headers"]["authorization"] = f"Bearer {token}"
    return through_api_gateway(event)


def answer_of(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


REPORT = {"action": "generate_report", "id": "r-1", "payload": {"pages": 2, "page_ms": 0}}


def test_a_sync_action_answers_200_with_the_response(user_key):
    # WHEN the sample event (the authorizer's context for user-a) echoes
    status, body = post({"action": "echo", "payload": {"hello": "world"}})

    # THEN the answer is the router's response message
    assert status == 200
    assert body["type"] == "response" and body["data"] == {"echo": {"hello": "world"}}


def test_an_async_action_answers_202_with_a_watch_token_for_that_request(user_key):
    # WHEN user-a starts a report over HTTP
    status, body = post(REPORT)

    # THEN it is queued without a connection, and the watch token names it
    assert status == 202
    assert body["request_id"] == "r-1" and body["status"] == "QUEUED"
    assert body["websocket_url"] == WEBSOCKET_URL
    assert body["watch_token_expires_at"] > time.time() * 1000
    identity = watch.verify(SECRET, body["watch_token"])
    assert identity == Identity("user-a", "tenant-1", watch_request="r-1")
    [item] = helpers.requests()
    assert "connection_id" not in item and item["status"] == {"S": "PENDING"}


def test_an_http_request_runs_and_its_updates_go_to_subscribers_only(user_key, management):
    # GIVEN a request started over HTTP, followed by a WebSocket tab of the same user
    _, started = post(REPORT)
    tab = Client("conn-tab", user="user-a", tenant="tenant-1")
    tab.connect()
    assert tab.send({"action": "subscribe", "request_id": "r-1"})["type"] == "progress"

    # WHEN the processor runs it
    helpers.Stream().run()

    # THEN the tab got the run's messages, nothing went to a missing owner,
    # and the watch token reads the outcome
    assert {c for _, c, _ in management.posts} == {"conn-tab"}
    assert management.messages("conn-tab")[-1]["status"] == "COMPLETED"
    status, snapshot = get("r-1", started["watch_token"])
    assert status == 200
    assert snapshot["status"] == "COMPLETED" and snapshot["result"]["pages"] == 2
    assert snapshot["seq"] == management.messages("conn-tab")[-1]["seq"]


def test_a_failed_request_reads_with_its_retryable_error(user_key):
    _, started = post(
        {"action": "generate_report", "id": "r-f", "payload": {"pages": 3, "fail_at_page": 2}}
    )
    helpers.Stream().run()

    status, snapshot = get("r-f", started["watch_token"])

    assert status == 200 and snapshot["status"] == "FAILED"
    assert snapshot["error"]["code"] == "PROCESSING_FAILED"
    assert snapshot["error"]["retryable"] is False


def test_a_user_token_reads_its_own_request(user_key):
    post(REPORT)
    status, snapshot = get("r-1", user_token(user_key))
    assert status == 200 and snapshot["status"] == "PENDING" and snapshot["seq"] == 0


def test_a_watch_token_reads_its_request_only(user_key):
    # GIVEN two requests of user-a and a watch token for the first
    _, first = post(REPORT)
    post({**REPORT, "id": "r-2"})

    # WHEN the token reads the second, and an unknown one
    other = get("r-2", first["watch_token"])
    unknown = get("r-9", first["watch_token"])

    # THEN both are NOT_FOUND alike: no existence leak
    assert other[0] == unknown[0] == 404
    assert other[1]["error"]["code"] == "NOT_FOUND"


def test_another_users_token_cannot_read_a_request(user_key):
    post(REPORT)
    status, body = get("r-1", user_token(user_key, sub="user-b"))
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"


def test_a_watch_token_cannot_start_requests(user_key):
    _, started = post(REPORT)
    status, body = post({**REPORT, "id": "r-2"}, token=started["watch_token"])
    assert status == 403 and body["error"]["code"] == "FORBIDDEN"


def test_without_a_token_api_gateway_answers_401_before_the_authorizer(user_key):
    assert get("r-1", None) == (401, {"message": "Unauthorized"})
    assert post({"action": "echo"}, token="") == (401, {"message": "Unauthorized"})


@pytest.mark.parametrize("token", ["not-a-jwt", "eyJhbGciOiJub25lIn0.e30."])
def test_bad_tokens_are_refused_by_the_authorizer_with_403(user_key, token):
    # The simple response isAuthorized=false: API Gateway's 403, the function never runs.
    assert get("r-1", token) == (403, {"message": "Forbidden"})
    assert post({"action": "echo"}, token=token) == (403, {"message": "Forbidden"})
    assert helpers.requests() == []


def test_a_tenant_not_allowed_is_403(user_key):
    token = user_token(user_key, tenant="tenant-9")
    assert post({"action": "echo"}, token=token) == (403, {"message": "Forbidden"})
    assert get("r-1", token) == (403, {"message": "Forbidden"})


def test_the_function_takes_identity_only_from_the_authorizer_context(user_key):
    # GIVEN a request whose route has no authorizer context, but a valid bearer token
    event = load_event("http_post_requests")
    del event["requestContext"]["authorizer"]
    event["headers"]["authorization"] = f"Bearer {user_token(user_key)}"

    # WHEN the function is invoked with it (a route left without the authorizer)
    status, body = answer_of(http_entry.handler(event, FakeContext()))

    # THEN it verifies nothing itself and refuses
    assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"
    assert helpers.requests() == []


@pytest.mark.parametrize(
    "body, status, code",
    [
        ("{not json", 400, "INVALID_MESSAGE"),
        ({"action": "nope"}, 400, "INVALID_ACTION"),
        ({"action": "generate_report", "payload": {"pages": 0}}, 400, "VALIDATION_ERROR"),
        ({"action": "ping"}, 400, "INVALID_ACTION"),
        ({"action": "subscribe", "request_id": "r-1"}, 400, "INVALID_ACTION"),
        ({"action": "cancel", "request_id": "r-1"}, 400, "INVALID_ACTION"),
        ({"action": "echo", "payload": {"blob": "x" * (129 * 1024)}}, 413, "PAYLOAD_TOO_LARGE"),
    ],
)
def test_refusals_map_to_http_statuses(user_key, body, status, code):
    answer_status, answer = post(body)
    assert answer_status == status and answer["error"]["code"] == code


def test_an_id_reused_with_another_payload_is_409(user_key):
    post(REPORT)
    status, body = post({**REPORT, "payload": {"pages": 3}})
    assert status == 409 and body["error"]["code"] == "CONFLICT"


def test_a_repeated_post_is_idempotent(user_key):
    assert post(REPORT)[1]["request_id"] == post(REPORT)[1]["request_id"] == "r-1"
    assert len(helpers.requests()) == 1


def test_over_the_active_cap_is_429_and_retryable(user_key, monkeypatch):
    monkeypatch.setenv(config.MAX_ACTIVE_REQUESTS, "1")
    runtime.reset()
    post(REPORT)
    status, body = post({**REPORT, "id": "r-2"})
    assert status == 429 and body["error"]["retryable"] is True


def test_a_sync_handler_past_its_deadline_is_504(user_key, monkeypatch):
    monkeypatch.setenv(config.SYNC_TIMEOUT_MS, "200")
    runtime.reset()
    status, body = post({"action": "slow_sync", "payload": {"seconds": 1}})
    assert status == 504 and body["error"]["code"] == "TIMEOUT"


@pytest.mark.parametrize("wait", ["26", "-1", "soon", "nan"])
def test_a_wait_outside_0_to_25_seconds_is_400(user_key, wait):
    post(REPORT)
    status, body = get("r-1", user_token(user_key), wait=wait)
    assert status == 400 and body["error"]["code"] == "VALIDATION_ERROR"


def test_unknown_routes_are_404(user_key):
    event = load_event("http_get_request")
    event["requestContext"]["http"]["method"] = "DELETE"
    status, body = answer_of(http_entry.handler(event, FakeContext()))
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"


# Long-poll decisions, on plain items and a fake clock


def test_a_long_poll_reads_the_table_until_the_request_changes(user_key):
    # GIVEN a pending request, and the processor running it shortly after the poll starts
    import threading

    _, started = post(REPORT)
    runner = threading.Timer(0.5, helpers.Stream().run)
    runner.start()

    # WHEN the watch token long-polls
    began = time.monotonic()
    status, snapshot = get("r-1", started["watch_token"], wait="10")
    runner.join()

    # THEN the answer came with the change, well before the wait ran out
    assert status == 200 and snapshot["status"] != "PENDING"
    assert time.monotonic() - began < 5
