"""Requests end to end: sync and async actions, rejections, disconnects, many clients."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.e2e.conftest import LocalStack, start_stack
from tests.e2e.wire import (
    ask,
    eventually,
    open_socket,
    receive,
    run,
    run_async_request,
    send,
    unique,
)

pytestmark = pytest.mark.e2e


def test_echo_answers_at_once_with_the_payload(local_stack: LocalStack) -> None:
    async def scenario() -> None:
        # GIVEN a connected client
        async with open_socket(local_stack.url(local_stack.dev_token)) as socket:
            # WHEN it sends a sync action
            payload = {"text": "hello", "numbers": [1, 2, 3], "nested": {"ok": True}}
            answer = await ask(socket, {"action": "echo", "id": "echo-1", "payload": payload})
        # THEN the route response carries the handler's data
        assert answer["type"] == "response"
        assert answer["success"] is True
        assert answer["data"] == {"echo": payload}

    run(scenario())


def test_report_sends_ordered_progress_and_exactly_one_complete(local_stack: LocalStack) -> None:
    async def scenario() -> None:
        async with open_socket(local_stack.url(local_stack.dev_token)) as socket:
            # WHEN a client asks for a long report
            acknowledgment, updates = await run_async_request(
                socket, "generate_report", {"pages": 10, "page_ms": 50}
            )
            # and then asks for its status
            await send(socket, {"action": "status", "request_id": acknowledgment["request_id"]})
            late = []
            while (message := await receive(socket))["type"] != "status":
                late.append(message)

        # THEN it was acknowledged as queued
        assert acknowledgment["status"] == "QUEUED"
        # and progress came in order, growing, before one complete
        progress = [m for m in updates if m["type"] == "progress"]
        complete = updates[-1]
        assert progress, "no progress arrived"
        assert [m["type"] for m in updates[:-1]] == ["progress"] * len(progress)
        sequence = [m["seq"] for m in updates]
        assert sequence == sorted(set(sequence)), sequence
        percentages = [m["percentage"] for m in progress]
        assert percentages == sorted(percentages)
        assert percentages[0] > 0 and percentages[-1] <= 100
        assert complete["status"] == "COMPLETED"
        assert complete["result"]["pages"] == 10
        assert not [m for m in late if m["type"] == "complete"], late
        assert message["request"]["status"] == "COMPLETED"

    run(scenario())


def test_failing_report_ends_failed_with_processing_failed(local_stack: LocalStack) -> None:
    async def scenario() -> None:
        async with open_socket(local_stack.url(local_stack.dev_token)) as socket:
            _, updates = await run_async_request(
                socket, "generate_report", {"pages": 5, "page_ms": 10, "fail_at_page": 3}
            )
        complete = updates[-1]
        assert complete["status"] == "FAILED"
        assert complete["error"]["code"] == "PROCESSING_FAILED"

    run(scenario())


def test_invalid_payload_is_refused_before_anything_is_stored(local_stack: LocalStack) -> None:
    user = unique("validation")
    token = local_stack.token(user, "tenant-e2e")

    async def scenario() -> list[dict]:
        async with open_socket(local_stack.url(token)) as socket:
            answers = [
                await ask(socket, {"action": "generate_report", "id": "bad-1", "payload": payload})
                for payload in ({}, {"pages": 0}, {"pages": "ten"}, {"pages": 5, "page_ms": -1})
            ]
            stored_before = await asyncio.to_thread(local_stack.items_of_user, "requests", user)
            # A valid request of the same user is found by the same look-up.
            await run_async_request(socket, "generate_report", {"pages": 1, "page_ms": 0})
        stored_after = await asyncio.to_thread(local_stack.items_of_user, "requests", user)
        assert stored_before == []
        assert len(stored_after) == 1
        return answers

    answers = run(scenario())
    for answer in answers:
        assert answer["type"] == "error", answer
        assert answer["error"]["code"] == "VALIDATION_ERROR"
        assert answer["request_id"] == "bad-1"
    named = [set(answer["error"]["details"]["fields"]) for answer in answers]
    assert named == [{"pages"}, {"pages"}, {"pages"}, {"page_ms"}]


def test_unknown_action_is_invalid_action(local_stack: LocalStack) -> None:
    async def scenario() -> dict:
        async with open_socket(local_stack.url(local_stack.dev_token)) as socket:
            return await ask(socket, {"action": "no_such_action", "payload": {}})

    answer = run(scenario())
    assert answer["type"] == "error"
    assert answer["error"]["code"] == "INVALID_ACTION"


@pytest.mark.parametrize("frame", ["this is not json", "[1, 2, 3]", '{"action": 42}'])
def test_malformed_message_is_invalid_message(local_stack: LocalStack, frame: str) -> None:
    async def scenario() -> dict:
        async with open_socket(local_stack.url(local_stack.dev_token)) as socket:
            await socket.send(frame)
            return await receive(socket)

    answer = run(scenario())
    assert answer["type"] == "error"
    assert answer["error"]["code"] == "INVALID_MESSAGE"


def test_request_completes_after_its_client_disconnects(local_stack: LocalStack) -> None:
    user = unique("dropout")
    token = local_stack.token(user, "tenant-e2e")

    async def scenario() -> None:
        # GIVEN a client that started a report and then went away
        async with open_socket(local_stack.url(token)) as socket:
            acknowledgment = await ask(
                socket, {"action": "generate_report", "payload": {"pages": 10, "page_ms": 100}}
            )
            assert acknowledgment["type"] == "acknowledgment"
            connections = await asyncio.to_thread(local_stack.items_of_user, "connections", user)
            assert len(connections) == 1
        request_id = acknowledgment["request_id"]

        # THEN its connection record is removed
        await eventually(
            lambda: asyncio.to_thread(local_stack.items_of_user, "connections", user),
            lambda items: items == [],
        )
        # and a new connection of the same user gets the result with `status`
        async with open_socket(local_stack.url(token)) as socket:

            async def status() -> dict:
                return await ask(socket, {"action": "status", "request_id": request_id})

            answer = await eventually(
                status, lambda a: a.get("request", {}).get("status") == "COMPLETED"
            )
        assert answer["request"]["result"]["pages"] == 10

    run(scenario())


def test_twenty_concurrent_clients_all_complete(local_stack: LocalStack) -> None:
    async def one_client(number: int) -> dict:
        token = local_stack.token(unique(f"crowd{number}"), "tenant-e2e")
        async with open_socket(local_stack.url(token)) as socket:
            _, updates = await run_async_request(
                socket, "generate_report", {"pages": 5, "page_ms": 100}
            )
        return updates[-1]

    async def scenario() -> list[dict]:
        return await asyncio.wait_for(
            asyncio.gather(*(one_client(n) for n in range(20))), timeout=120
        )

    completes = run(scenario())
    assert [c["status"] for c in completes] == ["COMPLETED"] * 20
    assert len({c["request_id"] for c in completes}) == 20


def test_stop_signal_does_not_wait_for_a_long_request(tmp_path) -> None:
    # GIVEN a stack running a request far longer than its shutdown grace
    with start_stack(tmp_path, "--shutdown-grace", "0.5") as stack:

        async def start_report() -> None:
            async with open_socket(stack.url(stack.dev_token)) as socket:
                answer = await ask(
                    socket, {"action": "generate_report", "payload": {"pages": 100, "page_ms": 100}}
                )
                assert answer["type"] == "acknowledgment"
                assert (await receive(socket))["type"] == "progress"

        run(start_report())
        stopping = time.monotonic()
    # WHEN it is stopped, THEN it exits 0 (checked by start_stack) without waiting 10 s
    assert time.monotonic() - stopping < 5
