"""One X-Ray trace from the router, through the stored request, to the processor's calls.

The X-Ray SDK runs as in Lambda (its `LambdaContext`, the trace header in
`_X_AMZN_TRACE_ID`), patching botocore, with an in-memory emitter in place of
the UDP one to the daemon.
"""

from __future__ import annotations

import json
from typing import Any

import botocore.client
import botocore.endpoint
import pytest
from aws_xray_sdk.core import patcher, xray_recorder
from aws_xray_sdk.core.lambda_launcher import LambdaContext

from streamer import config, runtime, tracing
from streamer.entry import processor, router
from tests.conftest import FakeContext, load_event, stream_event
from tests.functional.helpers import requests

ROUTER_TRACE = "1-5759e988-bd862e3fe1be46a994272793"
ROUTER_SEGMENT = "53995c3f42cd8ad8"
PROCESSOR_TRACE = "1-6759e988-0123456789abcdef01234567"


class MemoryEmitter:
    """What the recorder would send to the X-Ray daemon, as segment documents."""

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []

    def send_entity(self, entity: Any) -> None:
        self.documents.append(json.loads(entity.serialize()))

    def set_daemon_address(self, address: str | None) -> None:
        return None


@pytest.fixture
def traced(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> MemoryEmitter:
    """Tracing on, as on Lambda; botocore and the recorder are restored afterwards."""
    monkeypatch.setattr(
        botocore.client.BaseClient, "_make_api_call", botocore.client.BaseClient._make_api_call
    )
    monkeypatch.setattr(
        botocore.endpoint.Endpoint, "prepare_request", botocore.endpoint.Endpoint.prepare_request
    )
    monkeypatch.setattr(botocore.client, "_xray_enabled", True, raising=False)
    monkeypatch.delattr(botocore.client, "_xray_enabled")
    monkeypatch.setattr(patcher, "_PATCHED_MODULES", set())
    monkeypatch.setattr(tracing, "_enabled", False)
    monkeypatch.setattr(xray_recorder, "_context", LambdaContext())
    # What the recorder does when it finds itself in Lambda: stream each closed subsegment.
    monkeypatch.setattr(xray_recorder, "streaming_threshold", 0)
    emitter = MemoryEmitter()
    monkeypatch.setattr(xray_recorder, "_emitter", emitter)
    monkeypatch.setenv(config.TRACING, "true")
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    runtime.reset()
    return emitter


def _entities(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every segment and subsegment sent, nested ones included."""
    found = []

    def walk(entity: dict[str, Any]) -> None:
        found.append(entity)
        for child in entity.get("subsegments", []):
            walk({**child, "trace_id": child.get("trace_id", entity.get("trace_id"))})

    for document in documents:
        walk(document)
    return found


def test_the_processor_continues_the_routers_trace(traced, management, monkeypatch):
    # GIVEN a router invocation Lambda traces
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={ROUTER_TRACE};Parent={ROUTER_SEGMENT};Sampled=1")
    message = load_event("message")
    message["body"] = json.dumps(
        {"action": "generate_report", "id": "r-1", "payload": {"pages": 2, "page_ms": 10}}
    )

    # WHEN it queues a request, and a processor invocation of another trace runs its record
    answer = json.loads(router.handler(message, FakeContext())["body"])
    (stored,) = requests()
    monkeypatch.setenv(
        "_X_AMZN_TRACE_ID", f"Root={PROCESSOR_TRACE};Parent=1111111111111111;Sampled=1"
    )
    event, _ = stream_event()
    assert processor.handler(event, FakeContext()) == {"batchItemFailures": []}

    # THEN the router's subsegment is annotated and its place in the trace stored on the request
    assert answer["type"] == "acknowledgment"
    entities = _entities(traced.documents)
    (routed,) = [e for e in entities if e["name"] == "streamer.router"]
    assert routed["trace_id"] == ROUTER_TRACE
    assert routed["annotations"] == {
        "tenant_id": "tenant-1",
        "action": "generate_report",
        "request_id": "r-1",
    }
    assert stored["trace_header"]["S"] == (f"Root={ROUTER_TRACE};Parent={routed['id']};Sampled=1")
    # AND the processor's segment is in the router's trace, under the router's subsegment,
    # annotated, with the processor's DynamoDB calls inside it
    (continued,) = [e for e in entities if e["name"] == "streamer.request"]
    assert (continued["trace_id"], continued["parent_id"]) == (ROUTER_TRACE, routed["id"])
    assert continued["annotations"]["request_id"] == "r-1"
    calls = [e for e in entities if e["name"] == "dynamodb" and e["parent_id"] == continued["id"]]
    assert {c["trace_id"] for c in calls} == {ROUTER_TRACE}
    assert {c["aws"]["operation"] for c in calls} >= {"UpdateItem", "Query"}
    # AND nothing of the request's run (its reporter thread's calls too) went to the
    # processor invocation's own trace (this test's DescribeTable reads of the stream did)
    assert not [
        e
        for e in entities
        if e.get("trace_id") == PROCESSOR_TRACE
        and e.get("aws", {}).get("table_name")
        and e["aws"]["operation"] != "DescribeTable"
    ]


def test_with_tracing_off_no_trace_header_is_stored(management):
    message = load_event("message")
    message["body"] = json.dumps(
        {"action": "generate_report", "id": "r-2", "payload": {"pages": 2}}
    )
    router.handler(message, FakeContext())
    (stored,) = requests()
    assert "trace_header" not in stored
