"""Handler failures (retryable or not) and `cancel` before, during and after a run."""

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


def test_a_retryable_error_twice_then_success_completes_on_attempt_three(
    faulty_stack: FaultyStack,
) -> None:
    user, request_id = unique("flaky"), unique("flaky")

    # GIVEN a handler raising RetryableError on its first two attempts
    # WHEN it runs
    frames = faulty_stack.run_request(user, request_id, "flaky", {"succeed_on": 3})

    # THEN the client was told of each retry, and the third attempt's result came once
    retries = [f for f in frames if f["type"] == "progress"]
    assert [f["message"] for f in retries] == [
        "attempt 1 failed; retrying",
        "attempt 2 failed; retrying",
    ]
    assert all(f["metadata"]["retry_after"] > 0 for f in retries)
    assert frames[-1]["status"] == "COMPLETED" and frames[-1]["result"] == {"attempt": 3}
    assert_seq_grows(frames)
    assert [r["attempt"] for r in faulty_stack.runs(request_id)] == [1, 2, 3]
    item = faulty_stack.request(TENANT, user, request_id)
    assert item["status"] == "COMPLETED" and item["attempt"] == 3


def test_a_plain_exception_fails_at_once_without_a_retry(faulty_stack: FaultyStack) -> None:
    user, request_id = unique("explode"), unique("explode")

    frames = faulty_stack.run_request(user, request_id, "explode", {})

    assert [f["type"] for f in frames] == ["complete"]
    error = frames[0]["error"]
    assert frames[0]["status"] == "FAILED"
    assert error["code"] == "PROCESSING_FAILED" and error["retryable"] is False
    assert [r["attempt"] for r in faulty_stack.runs(request_id)] == [1]
    item = faulty_stack.request(TENANT, user, request_id)
    assert item["status"] == "FAILED" and item["attempt"] == 1


async def cancel(socket, request_id: str) -> tuple[dict, list[dict]]:
    """Send `cancel`; its `status` answer, and the frames about the request around it."""
    await send(socket, {"action": "cancel", "request_id": request_id})
    others = []
    while (frame := await receive(socket))["type"] != "status":
        others.append(frame)
    return frame, others


def test_cancel_while_pending_ends_it_at_once_and_it_never_runs(faulty_stack: FaultyStack):
    user, request_id = unique("cancel-pending"), unique("report")

    async def scenario() -> tuple[dict, list[dict]]:
        async with faulty_stack.connect(user) as socket:
            # GIVEN a request still waiting for the processor (the mapping is paused)
            faulty_stack.fault("mapping", enabled=False)
            try:
                await send_request(socket, "generate_report", request_id, {"pages": 2})
                # WHEN it is cancelled
                answer, frames = await cancel(socket, request_id)
                if not any(f["type"] == "complete" for f in frames):
                    frames += await frames_until_complete(socket, request_id)
            finally:
                faulty_stack.fault("mapping", enabled=True)
            # and the mapping then delivers its record
            await eventually(
                lambda: asyncio.to_thread(faulty_stack.state),
                lambda state: (
                    state["mapping"]["records_waiting"] == 0
                    and state["mapping"]["batches_in_flight"] == 0
                ),
            )
        return answer, frames

    answer, frames = run(scenario())

    # THEN it ended CANCELLED at once, with one complete, and no handler ever ran it
    assert answer["request"]["status"] == "CANCELLED"
    assert [(f["type"], f["status"]) for f in frames] == [("complete", "CANCELLED")]
    assert frames[0]["error"]["code"] == "CANCELLED"
    assert faulty_stack.runs(request_id) == []
    assert faulty_stack.request(TENANT, user, request_id)["status"] == "CANCELLED"


def test_cancel_while_running_stops_the_handler_and_ends_cancelled(faulty_stack: FaultyStack):
    user, request_id = unique("cancel-running"), unique("report")

    async def scenario() -> list[dict]:
        async with faulty_stack.connect(user) as socket:
            # GIVEN a running request
            payload = {"pages": 50, "page_ms": 100}
            await send_request(socket, "generate_report", request_id, payload)
            frames = [await receive(socket)]
            assert frames[0]["type"] == "progress"
            # WHEN it is cancelled
            _, around = await cancel(socket, request_id)
            frames += around
            if frames[-1]["type"] != "complete":
                frames += await frames_until_complete(socket, request_id)
            return frames

    frames = run(scenario())

    # THEN its worker stopped it: one complete, CANCELLED, long before the 50 pages
    assert frames[-1]["type"] == "complete" and frames[-1]["status"] == "CANCELLED"
    assert [f["type"] for f in frames].count("complete") == 1
    assert max(f.get("percentage", 0) for f in frames) < 100
    assert_seq_grows(frames)
    assert [r["attempt"] for r in faulty_stack.runs(request_id)] == [1]
    assert faulty_stack.request(TENANT, user, request_id)["status"] == "CANCELLED"


def test_cancel_after_completion_changes_nothing_and_answers_the_terminal_state(
    faulty_stack: FaultyStack,
) -> None:
    user, request_id = unique("cancel-done"), unique("report")

    async def scenario() -> tuple[dict, dict, list[dict]]:
        async with faulty_stack.connect(user) as socket:
            # GIVEN a completed request
            payload = {"pages": 2, "page_ms": 10}
            await send_request(socket, "generate_report", request_id, payload)
            await frames_until_complete(socket, request_id)
            # (whose worker has recorded that its `complete` went out: the worker
            # writes that after the send, so the client can see the complete first)
            before = await eventually(
                lambda: asyncio.to_thread(faulty_stack.request, TENANT, user, request_id),
                lambda item: "due_at" not in item,
            )
            # WHEN it is cancelled
            answer, frames = await cancel(socket, request_id)
            # (and nothing else arrives before the answer to a ping)
            await send(socket, {"action": "ping"})
            while (frame := await receive(socket))["type"] != "pong":
                frames.append(frame)
        return before, answer, frames

    before, answer, frames = run(scenario())

    # THEN the answer is the terminal state, with the result, and nothing changed or was sent
    assert answer["type"] == "status"
    assert answer["request"]["status"] == "COMPLETED"
    assert answer["request"]["result"]["pages"] == 2
    assert frames == []
    assert faulty_stack.request(TENANT, user, request_id) == before
