"""The whole flow in one process: connect, async request, stream record, processor."""

from __future__ import annotations

import json

from streamer.entry import connect, processor, router
from tests.conftest import FakeContext, load_event, stream_event


def send(body: dict) -> dict:
    event = load_event("message")
    event["body"] = json.dumps(body)
    answer = router.handler(event, FakeContext())
    assert answer["statusCode"] == 200
    return json.loads(answer["body"])


def test_async_report_sends_ordered_progress_then_one_complete(management):
    # GIVEN a connected client
    assert connect.handler(load_event("connect"), FakeContext()) == {"statusCode": 200}
    connection_id = load_event("connect")["requestContext"]["connectionId"]

    # WHEN it asks for a report, and the processor runs the stream record the put produced
    ack = send({"action": "generate_report", "id": "r-1", "payload": {"pages": 5, "page_ms": 60}})
    event, _ = stream_event()
    result = processor.handler(event, FakeContext())

    # THEN it was acknowledged, then got growing-seq progress and one complete
    assert ack == {
        "type": "acknowledgment",
        "request_id": "r-1",
        "status": "QUEUED",
        "estimated_duration_ms": 30000,
    }
    assert result == {"batchItemFailures": []}
    messages = management.messages(connection_id)
    kinds = [m["type"] for m in messages]
    assert kinds[-1] == "complete" and kinds.count("complete") == 1
    assert set(kinds[:-1]) == {"progress"}
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(1, len(seqs) + 1))
    assert messages[-2]["percentage"] == 100
    assert messages[-1]["status"] == "COMPLETED"
    assert messages[-1]["result"]["pages"] == 5
