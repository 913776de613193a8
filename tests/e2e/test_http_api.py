"""The HTTP API on `python -m local`: the async review flow of seed 000, and its refusals.

Start by `POST /requests` (202 with a watch token), follow by long-polling
`GET /requests/{id}?wait=N` with that token until the request ends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local import tokens
from tests.e2e.conftest import LocalStack, start_stack
from tests.e2e.test_auth import _dev_key_token, _foreign_signature, handshake_status
from tests.e2e.wire import run, unique

pytestmark = pytest.mark.e2e


def call(
    stack: LocalStack,
    method: str,
    path: str,
    token: str | None,
    body: dict[str, Any] | None = None,
    *,
    raw: bytes | None = None,
) -> tuple[int, dict[str, Any]]:
    """One HTTP request to the stack's HTTP API; its status and JSON body."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(stack.http_url.rstrip("/") + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=40) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start(stack: LocalStack, token: str, **payload: Any) -> tuple[int, dict[str, Any]]:
    request_id = f"review-{uuid.uuid4().hex[:8]}"
    body = {"action": "generate_report", "id": request_id, "payload": payload}
    return call(stack, "POST", "/requests", token, body)


def follow(stack: LocalStack, request_id: str, token: str, budget_s: float = 60) -> list[dict]:
    """Long-poll until the request ends; every snapshot seen, in order."""
    seen: list[dict] = []
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        status, snapshot = call(stack, "GET", f"/requests/{request_id}?wait=5", token)
        assert status == 200, snapshot
        seen.append(snapshot)
        if snapshot["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return seen
    pytest.fail(f"{request_id} did not end in {budget_s} s: {seen[-1:]}")


def test_the_review_flow_starts_by_http_and_ends_completed_by_long_poll(local_stack):
    # GIVEN a user who starts a report over HTTP
    token = local_stack.token("reviewer", "tenant-http")
    status, started = start(local_stack, token, pages=4, page_ms=300)

    # THEN it is accepted with where to follow it and a token for it alone
    assert status == 202, started
    assert started["status"] == "QUEUED"
    assert started["websocket_url"] == local_stack.websocket_url
    assert started["watch_token_expires_at"] > time.time() * 1000

    # WHEN the page follows it by long-poll with the watch token
    seen = follow(local_stack, started["request_id"], started["watch_token"])

    # THEN it saw it run and end COMPLETED with the result; seq never went back
    final = seen[-1]
    assert final["status"] == "COMPLETED" and final["result"]["pages"] == 4
    assert final["progress"] == 100
    seqs = [s["seq"] for s in seen]
    assert seqs == sorted(seqs) and len(seen) >= 2


def test_a_long_poll_answers_when_the_state_changes_not_at_the_end_of_the_wait(local_stack):
    token = local_stack.token("reviewer", "tenant-http")
    _, started = start(local_stack, token, pages=10, page_ms=300)
    request_id, watch = started["request_id"], started["watch_token"]
    status, first = call(local_stack, "GET", f"/requests/{request_id}", watch)
    assert status == 200

    began = time.monotonic()
    status, changed = call(local_stack, "GET", f"/requests/{request_id}?wait=20", watch)

    assert status == 200 and time.monotonic() - began < 10
    assert (changed["status"], changed["progress"], changed["seq"]) != (
        first["status"],
        first["progress"],
        first["seq"],
    )


def test_the_failure_path_ends_failed_with_retryable_in_the_error(local_stack):
    token = local_stack.token("reviewer", "tenant-http")
    status, started = start(local_stack, token, pages=5, page_ms=50, fail_at_page=3)
    assert status == 202

    final = follow(local_stack, started["request_id"], started["watch_token"])[-1]

    assert final["status"] == "FAILED"
    assert final["error"]["code"] == "PROCESSING_FAILED"
    assert final["error"]["retryable"] is False


def test_a_sync_action_answers_200_with_the_response(local_stack):
    token = local_stack.token("reviewer", "tenant-http")
    status, body = call(local_stack, "POST", "/requests", token, {"action": "echo", "payload": {}})
    assert status == 200 and body["type"] == "response" and body["data"] == {"echo": {}}


def test_a_watch_token_for_one_request_cannot_read_another(local_stack):
    token = local_stack.token("reviewer", "tenant-http")
    _, first = start(local_stack, token, pages=1, page_ms=0)
    _, second = start(local_stack, token, pages=1, page_ms=0)

    status, body = call(
        local_stack, "GET", f"/requests/{second['request_id']}", first["watch_token"]
    )

    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    # ... nor start anything: the authorizer admits it, the router refuses it
    status, body = call(local_stack, "POST", "/requests", first["watch_token"], {"action": "echo"})
    assert status == 403 and body["error"]["code"] == "FORBIDDEN"


def test_no_token_is_401_and_a_refused_token_403_from_api_gateway(local_stack):
    unauthorized, forbidden = (401, {"message": "Unauthorized"}), (403, {"message": "Forbidden"})
    assert call(local_stack, "GET", "/requests/anything", None) == unauthorized
    assert call(local_stack, "POST", "/requests", None, {"action": "echo"}) == unauthorized
    assert call(local_stack, "GET", "/requests/anything", "not.a.jwt") == forbidden
    expired = local_stack.token("reviewer", "tenant-http", ttl=-3600)
    assert call(local_stack, "POST", "/requests", expired, {"action": "echo"}) == forbidden


def test_refusals_use_protocol_codes_with_matching_statuses(local_stack):
    token = local_stack.token("reviewer", "tenant-http")
    _, started = start(local_stack, token, pages=1, page_ms=0)
    reused = {"action": "generate_report", "id": started["request_id"], "payload": {"pages": 2}}
    cases = [
        (call(local_stack, "POST", "/requests", token, raw=b"{nope"), 400, "INVALID_MESSAGE"),
        (call(local_stack, "POST", "/requests", token, {"action": "nope"}), 400, "INVALID_ACTION"),
        (
            call(local_stack, "POST", "/requests", token, {"action": "generate_report"}),
            400,
            "VALIDATION_ERROR",
        ),
        (call(local_stack, "POST", "/requests", token, reused), 409, "CONFLICT"),
        (
            call(
                local_stack,
                "POST",
                "/requests",
                token,
                {"action": "echo", "payload": {"x": "y" * 140_000}},
            ),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (call(local_stack, "GET", "/requests/unknown-id", token), 404, "NOT_FOUND"),
        (call(local_stack, "GET", "/requests/x?wait=30", token), 400, "VALIDATION_ERROR"),
    ]
    for (status, body), want_status, want_code in cases:
        assert (status, body["error"]["code"]) == (want_status, want_code), body


@pytest.fixture(scope="module")
def strict_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack that admits one tenant and one running request per user."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(os.environ, "STREAMER_ALLOWED_TENANTS", "tenant-ok")
        patch.setitem(os.environ, "STREAMER_MAX_ACTIVE_REQUESTS", "1")
        with start_stack(tmp_path_factory.mktemp("http-strict")) as stack:
            yield stack


def test_a_tenant_not_allowed_is_403(strict_stack):
    token = strict_stack.token("someone", "tenant-other")
    status, body = call(strict_stack, "POST", "/requests", token, {"action": "echo"})
    assert (status, body) == (403, {"message": "Forbidden"})


def test_over_the_active_cap_is_429_and_retryable(strict_stack):
    token = strict_stack.token("busy", "tenant-ok")
    status, _ = start(strict_stack, token, pages=20, page_ms=100)
    assert status == 202

    status, body = start(strict_stack, token, pages=1)

    assert status == 429 and body["error"]["code"] == "RATE_LIMITED"
    assert body["error"]["retryable"] is True


def _b64(value: dict | bytes) -> str:
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_matrix(stack: LocalStack) -> dict[str, str]:
    """Good and bad tokens for this stack (its dev ES256 key, issuer and audience)."""
    user = unique("matrix")
    key = Path(stack.ready["dev_key_file"]).read_bytes()
    claims = {
        "sub": user,
        "tenant_id": "tenant-http",
        "iss": stack.ready["jwt_issuer"],
        "aud": stack.ready["jwt_audience"],
        "exp": int(time.time()) + 600,
    }
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
    secret = tokens.public_key_pem(key).encode()
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return {
        "valid": stack.token(user, "tenant-http"),
        "expired": stack.token(user, "tenant-http", ttl=-3600),
        "wrongly signed": _foreign_signature(stack, user),
        "other audience": _dev_key_token(stack, user, audience="someone-else"),
        "other issuer": _dev_key_token(stack, user, issuer="https://other.example"),
        "garbage": "not-a-jwt",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "HS256 with the public key": f"{signing_input}.{_b64(mac)}",
    }


def test_both_apis_of_the_local_stack_accept_the_same_tokens(local_stack):
    # WHEN each token of the matrix opens a WebSocket and calls POST /requests
    results = {
        name: (
            run(handshake_status(local_stack.url(token))),
            call(local_stack, "POST", "/requests", token, {"action": "echo"})[0],
        )
        for name, token in token_matrix(local_stack).items()
    }

    # THEN the valid one is accepted by both, every other refused by both
    # (401 on the handshake, API Gateway's 403 on the HTTP API)
    assert results == {name: ((101, 200) if name == "valid" else (401, 403)) for name in results}
