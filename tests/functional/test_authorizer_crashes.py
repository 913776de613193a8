"""A refused token is not a crash; a crash of the authorizer is, and only a crash feeds the alarm.

The authorizer runs as Lambda runs it (configured through its environment, its JSON log
lines captured as they would reach CloudWatch Logs, the runtime's own `[ERROR]` line for
a raise added), and the lines are put in a (moto) log group and searched with the crash
alarm's own metric-filter patterns (`components.alarms`).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterator
from typing import Any

import boto3
import jwt
import pytest

from components.alarms import CRASH_LOG_TERMS, crash_filter_pattern
from local.http_api import authorizer_event as http_authorizer_event
from local.http_api import http_event
from streamer import auth, config, runtime
from streamer.entry import authorizer
from streamer.logs import JsonFormatter
from tests.conftest import REGION, FakeContext, Signer, load_event

LOG_GROUP = "/streamer-test/authorizer"


class Lines(logging.Handler):
    """The authorizer's log lines as the runtime prints them (one JSON object each)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.formatter = JsonFormatter()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.formatter.format(record))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("streamer")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def key(aws: dict[str, str], signers: dict[str, Signer], monkeypatch: pytest.MonkeyPatch) -> Any:
    private = signers["ec"].private
    monkeypatch.setenv(config.JWT_PUBLIC_KEY, signers["ec"].public_pem)
    monkeypatch.setenv(config.ALLOWED_TENANTS, "tenant-1")
    runtime.reset()
    authorizer.reset()
    return private


def token(key: Any, tenant: str = "tenant-1", ttl_s: int = 300) -> str:
    now = int(time.time())
    claims = {"sub": "user-a", "tenant_id": tenant, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, key, algorithm="ES256")


def websocket(token_value: str) -> dict[str, Any]:
    event = load_event("authorizer_connect")
    event["queryStringParameters"] = {"token": token_value}
    return event


def http(token_value: str) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token_value}", "host": "h"}
    event = http_event("POST", "/requests", headers, b"{}", "POST /requests", {}, account_id="1")
    return http_authorizer_event(event, region=REGION, account_id="1")


def run(event: dict[str, Any], lines: Lines) -> list[str]:
    """Invoke as Lambda does; the log lines of this invocation, with the runtime's own
    `[ERROR]` line when the handler raised (what makes it count in `Errors`)."""
    start = len(lines.lines)
    try:
        authorizer.handler(event, FakeContext())
    except Exception as error:
        printed = "".join(traceback.format_exception_only(error)).strip()
        lines.lines.append(f"[ERROR] {printed}\nTraceback (most recent call last): ...")
    return lines.lines[start:]


def crash_matches(logged: list[str]) -> int:
    """How many crash-metric data points CloudWatch Logs would make of these lines."""
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName=LOG_GROUP)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName="s")
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=LOG_GROUP,
        logStreamName="s",
        logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(logged)],
    )
    matched = 0
    for term in CRASH_LOG_TERMS:
        found = logs.filter_log_events(
            logGroupName=LOG_GROUP, filterPattern=crash_filter_pattern(term)
        )
        matched += len(found["events"])
    logs.delete_log_group(logGroupName=LOG_GROUP)
    return matched


def test_refusals_on_both_apis_feed_no_crash_metric(key, lines):
    # WHEN tokens are refused on both APIs: expired, garbage, a tenant not allowed
    refused = [token(key, ttl_s=-600), "garbage", token(key, tenant="tenant-9")]
    logged: list[str] = []
    for value in refused:
        logged += run(websocket(value), lines)
        logged += run(http(value), lines)

    # THEN the WebSocket's bad tokens raised (Lambda Errors: the 401) ...
    assert sum("[ERROR] Exception: Unauthorized" in line for line in logged) == 2
    # ... every refusal is logged as one ...
    assert sum('"message":"connection refused"' in line for line in logged) == 3
    assert sum('"message":"request refused"' in line for line in logged) == 3
    # ... and none of these lines is a crash data point
    assert crash_matches(logged) == 0


def test_a_crash_on_either_api_feeds_the_crash_metric_once(key, lines, monkeypatch):
    # GIVEN a verifier that breaks (a bug, an unexpected library error)
    def broken(self, value: str) -> None:
        raise RuntimeError("verifier bug")

    monkeypatch.setattr(auth.TokenVerifier, "verify", broken)

    # WHEN a valid token arrives on each API
    websocket_lines = run(websocket(token(key)), lines)
    http_lines = run(http(token(key)), lines)

    # THEN each raised (API Gateway answers 500, not a 401/403 disguise) ...
    assert any(line.startswith("[ERROR] Exception: authorizer failed") for line in websocket_lines)
    assert any(line.startswith("[ERROR] Exception: authorizer failed") for line in http_lines)
    # ... and each counts exactly once in the crash metric
    assert crash_matches(websocket_lines) == 1
    assert crash_matches(http_lines) == 1


def test_lambdas_own_failure_lines_feed_the_crash_metric(aws):
    # Lines the Lambda runtime writes for failures the handler never sees.
    platform = [
        "2026-12-03T08:00:00.000Z 1f2e Task timed out after 10.01 seconds",
        "RequestId: 1f2e Error: Runtime exited with error: signal: killed\nRuntime.ExitError",
        "[ERROR] Runtime.ImportModuleError: Unable to import module 'streamer.entry.authorizer'",
    ]
    assert crash_matches(platform) == len(platform)
