"""A processor worker dies mid-request: its lease expires, the sweeper re-drives, it resumes."""

from __future__ import annotations

import asyncio

import pytest

from client import RequestTimeout, StreamerClient
from tests.e2e.wire import eventually, run, unique
from tests.faults.app import FINISHED
from tests.faults.conftest import (
    TENANT,
    FaultyStack,
    assert_seq_grows,
    frames_until_complete,
    send_request,
)

pytestmark = pytest.mark.faults


def test_a_killed_worker_is_replaced_and_the_request_resumes_from_its_checkpoint(
    faulty_stack: FaultyStack,
) -> None:
    user, request_id = unique("killed"), unique("report")

    async def scenario() -> tuple[list[dict], int]:
        async with faulty_stack.connect(user) as socket:
            # GIVEN a long report whose worker has saved a checkpoint
            payload = {"pages": 10, "page_ms": 150}
            await send_request(socket, "generate_report", request_id, payload)
            item = await eventually(
                lambda: asyncio.to_thread(faulty_stack.request, TENANT, user, request_id),
                lambda item: (item.get("checkpoint") or {}).get("pages_done", 0) >= 2,
            )
            # WHEN its worker is killed
            killed = faulty_stack.fault("kill", request_id=request_id)
            # (a dead worker takes its whole batch down, as a dead Lambda does)
            assert request_id in killed["killed"][0]["request_ids"]
            # THEN the client still gets the rest, up to one complete
            return await frames_until_complete(socket, request_id), item["checkpoint"]

    frames, saved = run(scenario())

    assert [f["type"] for f in frames].count("complete") == 1
    assert frames[-1]["status"] == "COMPLETED" and frames[-1]["result"]["pages"] == 10
    assert_seq_grows(frames)
    # It ran twice: the killed attempt, and one that resumed from the saved checkpoint.
    runs = faulty_stack.runs(request_id)
    assert [r["attempt"] for r in runs] == [1, 2]
    assert runs[0]["checkpoint"] is None
    assert runs[1]["checkpoint"]["pages_done"] >= saved["pages_done"]
    # and only the second ran to its end
    assert [r["attempt"] for r in faulty_stack.runs(request_id, FINISHED)] == [2]
    item = faulty_stack.request(TENANT, user, request_id)
    assert item["status"] == "COMPLETED" and item["attempt"] == 2


def test_a_request_whose_worker_dies_on_every_attempt_ends_failed_with_timeout(
    faulty_stack: FaultyStack,
) -> None:
    user, request_id = unique("hung"), unique("hang")

    async def scenario() -> RequestTimeout:
        token = faulty_stack.stack.token(user, TENANT)
        async with StreamerClient(faulty_stack.stack.websocket_url, token) as client:
            # GIVEN a handler that outlives the processor's timeout on each attempt
            call = client.call("hang", {"seconds": 60}, request_id=request_id)
            # WHEN every attempt is stopped at the timeout
            with pytest.raises(RequestTimeout) as raised:
                await asyncio.wait_for(call, 60)
        return raised.value

    error = run(scenario())

    # THEN the waiting call ends with TIMEOUT after the last attempt, once
    assert error.request_status == "FAILED" and error.request_id == request_id
    assert [r["attempt"] for r in faulty_stack.runs(request_id)] == [1, 2, 3]
    item = faulty_stack.request(TENANT, user, request_id)
    assert item["status"] == "FAILED" and item["error"]["code"] == "TIMEOUT"
