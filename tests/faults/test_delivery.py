"""Redelivered records, throttled claims, and a management API answering 410 or 429."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.wire import eventually, receive, run, send, unique
from tests.faults.conftest import (
    TENANT,
    FaultyStack,
    assert_seq_grows,
    frames_until_complete,
    send_request,
)

pytestmark = pytest.mark.faults

SHORT_REPORT = {"pages": 3, "page_ms": 50}


def test_a_stream_record_delivered_three_times_runs_the_request_once(
    faulty_stack: FaultyStack,
) -> None:
    user, request_id = unique("redelivered"), unique("report")
    before = faulty_stack.state()["injected"].get("records_redelivered", 0)

    # GIVEN the mapping hands the request's record to the processor three times
    faulty_stack.fault("redeliver", request_id=request_id, times=3)
    # WHEN the request runs
    frames = faulty_stack.run_request(user, request_id, "generate_report", SHORT_REPORT)

    # THEN the handler ran once, and the client got one complete
    assert faulty_stack.state()["injected"]["records_redelivered"] == before + 2
    assert [r["attempt"] for r in faulty_stack.runs(request_id)] == [1]
    assert [f["type"] for f in frames].count("complete") == 1
    assert frames[-1]["status"] == "COMPLETED"
    assert_seq_grows(frames)


def test_throttling_on_the_claim_is_a_batch_item_failure_and_the_retry_runs_it(
    faulty_stack: FaultyStack,
) -> None:
    user, request_id = unique("throttled"), unique("report")
    before = faulty_stack.state()

    # GIVEN DynamoDB throttles the processor's claim of the request past the SDK's retries
    faulty_stack.fault("claims", request_id=request_id, count=1)
    # WHEN the request runs
    frames = faulty_stack.run_request(user, request_id, "generate_report", SHORT_REPORT)

    # THEN the record came back as a batch item failure, and the mapping's retry ran it once
    after = faulty_stack.state()
    throttled_before = before["injected"].get("claims_throttled", 0)
    assert after["injected"]["claims_throttled"] == throttled_before + 1
    assert after["mapping"]["batch_item_failures"] >= before["mapping"]["batch_item_failures"] + 1
    assert after["mapping"]["records_discarded"] == before["mapping"]["records_discarded"]
    assert [r["attempt"] for r in faulty_stack.runs(request_id)] == [1]
    assert frames[-1]["status"] == "COMPLETED"
    assert [f["type"] for f in frames].count("complete") == 1


def test_a_410_forgets_the_connection_and_the_result_waits_for_the_user(
    faulty_stack: FaultyStack,
) -> None:
    user, request_id = unique("gone"), unique("report")

    async def scenario() -> tuple[list[dict], dict]:
        async with faulty_stack.connect(user) as first:
            [connection_id] = faulty_stack.connection_ids(user)
            # GIVEN the management API says the connection is gone (410) at the first post
            faulty_stack.fault("management", connection_id=connection_id, status=410)
            # WHEN a request of that connection runs
            payload = {"pages": 4, "page_ms": 100}
            await send_request(first, "generate_report", request_id, payload)
            # THEN the connection's record is deleted, and the request still completes
            await eventually(
                lambda: asyncio.to_thread(faulty_stack.connection_ids, user),
                lambda ids: ids == [],
            )
            await eventually(
                lambda: asyncio.to_thread(faulty_stack.request, TENANT, user, request_id),
                lambda item: item["status"] == "COMPLETED",
            )
            # and nothing more is sent to it: the next frame it gets answers its ping
            await send(first, {"action": "ping"})
            left_over = []
            while (frame := await receive(first))["type"] != "pong":
                left_over.append(frame)
        async with faulty_stack.connect(user) as second:
            # and a new connection of the user gets the result
            await send(second, {"action": "subscribe", "request_id": request_id})
            snapshot = await receive(second)
        return left_over, snapshot

    left_over, snapshot = run(scenario())

    assert left_over == []
    assert snapshot["type"] == "complete" and snapshot["status"] == "COMPLETED"
    assert snapshot["result"]["pages"] == 4
    assert [r["attempt"] for r in faulty_stack.runs(request_id)] == [1]


def test_a_429_is_retried_with_backoff_and_the_message_delivered(
    faulty_stack: FaultyStack,
) -> None:
    user, request_id = unique("throttled-api"), unique("report")
    before = faulty_stack.state()["injected"].get("management_429", 0)

    async def scenario() -> list[dict]:
        async with faulty_stack.connect(user) as socket:
            [connection_id] = faulty_stack.connection_ids(user)
            # GIVEN the management API throttles the next two posts to the connection (429)
            faulty_stack.fault("management", connection_id=connection_id, status=429, count=2)
            # WHEN a request of that connection runs
            await send_request(socket, "generate_report", request_id, SHORT_REPORT)
            return await frames_until_complete(socket, request_id)

    frames = run(scenario())

    # THEN the throttled message arrived after the backoff, and so did everything after it
    assert faulty_stack.state()["injected"]["management_429"] == before + 2
    assert frames[0]["type"] == "progress" and frames[0]["seq"] == 1
    assert_seq_grows(frames)
    assert frames[-1]["status"] == "COMPLETED"
    assert [f["type"] for f in frames].count("complete") == 1
