"""A server that answers badly never hangs a call.

UNAVAILABLE (the store is out; nothing was stored) is sent again with backoff
until the client's deadline, then reaches the caller as `Unavailable`. A
message nothing answers, or answered by an error naming no message, ends the
call with `NoAnswer` after the client's answer timeout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from client import NoAnswer, RequestCancelled, StreamerClient, Unavailable
from tests.client.fake_streamer_server import FakeStreamer, PageGate, run
from tests.client.test_client_library import client_for, report

OUTAGE = {"retry_after_ms": 20}

OnMessage = Callable[[ServerConnection, dict[str, Any]], Awaitable[bool]]


async def answer_unavailable(
    connection: ServerConnection, message: dict[str, Any], details: dict[str, Any]
) -> None:
    """Answer `message` as the router does when its store is out."""
    error = {"code": "UNAVAILABLE", "message": "the request store is unreachable"}
    error |= {"details": details, "retryable": True}
    await connection.send(
        json.dumps({"type": "error", "request_id": message["id"], "error": error})
    )


def out_for(
    action: str, times: int, details: dict[str, Any], arrivals: list[float] | None = None
) -> OnMessage:
    """An `on_message` hook answering the first `times` messages of `action` UNAVAILABLE."""
    answered: list[str] = []

    async def on_message(connection: ServerConnection, message: dict[str, Any]) -> bool:
        if message.get("action") != action:
            return False
        if arrivals is not None:
            arrivals.append(asyncio.get_running_loop().time())
        if len(answered) >= times:
            return False
        answered.append(message["id"])
        await answer_unavailable(connection, message, details)
        return True

    return on_message


def swallowing(action: str) -> OnMessage:
    """An `on_message` hook that never answers `action`."""

    async def on_message(connection: ServerConnection, message: dict[str, Any]) -> bool:
        return message.get("action") == action

    return on_message


def test_a_call_answered_unavailable_is_sent_again_and_returns():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a store outage that refuses the first three reports
            server.on_message = out_for("generate_report", 3, OUTAGE)
            # WHEN a report is called
            result = await client.call("generate_report", report(2), request_id="out-1")
            # THEN the same message went out four times and the report ran once
            assert result == {"pages": 2, "report_id": "rep-out-1"}
            sent = server.received_actions("generate_report")
            assert [m["id"] for m in sent] == ["out-1"] * 4
            assert server.runs["out-1"] == 1

    run(scenario())


def test_the_resend_waits_at_least_retry_after():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN an outage answer asking for 400 ms
            arrivals: list[float] = []
            server.on_message = out_for("echo", 1, {"retry_after_ms": 400}, arrivals)
            # WHEN a sync action is sent
            assert await client.send("echo", {"n": 1}) == {"echo": {"n": 1}}
            # THEN the resend came no sooner than the server asked
            first, again = arrivals
            assert again - first >= 0.4

    run(scenario())


def test_still_unavailable_at_the_deadline_the_caller_gets_unavailable():
    async def scenario():
        async with (
            FakeStreamer() as server,
            client_for(server, unavailable_deadline_s=0.5) as client,
        ):
            # GIVEN an outage that outlasts the client's deadline of 0.5 s
            server.on_message = out_for("generate_report", 10_000, OUTAGE)
            # WHEN a report is called
            with pytest.raises(Unavailable) as caught:
                await client.call("generate_report", report(1), request_id="out-2")
            # THEN it was sent more than once, then the caller got a retryable
            # UNAVAILABLE about its request, with the server's details
            assert len(server.received_actions("generate_report")) > 1
            error = caught.value
            assert (error.code, error.retryable, error.request_id) == ("UNAVAILABLE", True, "out-2")
            assert error.request_status is None
            assert error.details == OUTAGE
            assert "gave up after" in error.message
            # AND nothing was stored
            assert "out-2" not in server.requests

    run(scenario())


def test_a_zero_deadline_gives_the_first_unavailable_to_the_caller():
    async def scenario():
        async with (
            FakeStreamer() as server,
            client_for(server, unavailable_deadline_s=0) as client,
        ):
            server.on_message = out_for("echo", 1, OUTAGE)
            with pytest.raises(Unavailable):
                await client.call("echo", {})
            assert len(server.received_actions("echo")) == 1

    run(scenario())


SYSTEM_ACTIONS: dict[str, Callable[[StreamerClient, str], Awaitable[Any]]] = {
    "status": lambda client, request_id: client.status(request_id),
    "subscribe": lambda client, request_id: client.subscribe(request_id),
    "cancel": lambda client, request_id: client.cancel(request_id),
    "unsubscribe": lambda client, request_id: client.unsubscribe(request_id),
}


async def report_for(
    server: FakeStreamer, client: StreamerClient, action: str
) -> asyncio.Task[Any] | None:
    """A finished report, or for `cancel` one held at its first page (the running call):
    a finished one needs no cancel, the subscribe's snapshot already says how it ended."""
    if action != "cancel":
        await client.call("generate_report", report(1))
        return None
    gate = server.before_page = PageGate(page=1)
    running = asyncio.create_task(client.call("generate_report", report(2)))
    await gate.reached.wait()
    return running


@pytest.mark.parametrize("action", SYSTEM_ACTIONS)
def test_a_system_action_answered_unavailable_is_sent_again(action):
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a report, and an outage answering the first `action`
            running = await report_for(server, client, action)
            [request_id] = server.requests
            server.on_message = out_for(action, 1, OUTAGE)
            # WHEN the client does that action
            doing = asyncio.create_task(SYSTEM_ACTIONS[action](client, request_id))
            if running is not None:
                # (the held report notices the cancel at its next page)
                await server.wait_until(lambda: len(server.received_actions(action)) == 2)
                server.before_page.opened.set()
                with pytest.raises(RequestCancelled):
                    await running
            await doing
            # THEN it was answered after the same message went out again
            first, again = server.received_actions(action)
            assert first == again

    run(scenario())


@pytest.mark.parametrize("action", SYSTEM_ACTIONS)
def test_a_system_action_still_unavailable_at_the_deadline_raises(action):
    async def scenario():
        async with (
            FakeStreamer() as server,
            client_for(server, unavailable_deadline_s=0.3) as client,
        ):
            running = await report_for(server, client, action)
            [request_id] = server.requests
            server.on_message = out_for(action, 10_000, OUTAGE)
            with pytest.raises(Unavailable) as caught:
                await SYSTEM_ACTIONS[action](client, request_id)
            assert caught.value.request_id == request_id
            if running is not None:
                server.before_page.opened.set()
                assert (await running)["pages"] == 2

    run(scenario())


def test_unanswered_call_raises_no_answer_after_the_answer_timeout():
    async def scenario():
        async with FakeStreamer() as server, client_for(server, answer_timeout_s=0.3) as client:
            # GIVEN a server that never answers the echo
            server.on_message = swallowing("echo")
            # WHEN it is called
            with pytest.raises(NoAnswer) as caught:
                await client.call("echo", {}, request_id="silent-1")
            # THEN the caller is told, with a retryable error naming the request
            error = caught.value
            assert (error.code, error.retryable, error.request_id) == (
                "NO_ANSWER",
                True,
                "silent-1",
            )
            # AND the connection still works
            assert await client.call("generate_report", report(1))

    run(scenario())


@pytest.mark.parametrize(
    ("frame", "said"),
    [
        (
            {"type": "error", "error": {"code": "INTERNAL_ERROR", "message": "store down"}},
            "store down",
        ),
        (
            {"message": "Internal server error", "connectionId": "c-1", "requestId": "g-1"},
            "Internal server error",
        ),
    ],
    ids=["error-without-request-id", "gateway-internal-server-error"],
)
def test_an_error_naming_no_message_ends_the_call_after_the_answer_timeout(frame, said):
    async def scenario():
        async with FakeStreamer() as server, client_for(server, answer_timeout_s=0.3) as client:
            # GIVEN a server answering the echo with an error that names no message
            async def on_message(connection: ServerConnection, message: dict[str, Any]) -> bool:
                if message.get("action") != "echo":
                    return False
                await connection.send(json.dumps(frame))
                return True

            server.on_message = on_message
            # WHEN it is called / THEN the call ends, and says what the server sent
            with pytest.raises(NoAnswer) as caught:
                await client.call("echo", {})
            assert said in caught.value.message

    run(scenario())


def test_an_unanswered_status_raises_no_answer():
    async def scenario():
        async with FakeStreamer() as server, client_for(server, answer_timeout_s=0.3) as client:
            await client.call("generate_report", report(1), request_id="done-1")
            server.on_message = swallowing("status")
            with pytest.raises(NoAnswer) as caught:
                await client.status("done-1")
            assert caught.value.request_id == "done-1"

    run(scenario())


def test_an_acknowledged_request_may_run_longer_than_the_answer_timeout():
    async def scenario():
        async with FakeStreamer() as server, client_for(server, answer_timeout_s=0.2) as client:
            # GIVEN a report held at its first page, after its acknowledgment
            gate = PageGate(page=1)
            server.before_page = gate
            calling = asyncio.create_task(client.call("generate_report", report(1)))
            await gate.reached.wait()
            await client.ping()  # answered after the acknowledgment: the client has read it
            # WHEN it runs for longer than the answer timeout
            await asyncio.sleep(0.5)
            gate.opened.set()
            # THEN the call still returns its result
            assert (await calling)["pages"] == 1

    run(scenario())


@pytest.mark.parametrize(
    "options",
    [{"unavailable_deadline_s": -1}, {"answer_timeout_s": 0}, {"answer_timeout_s": -1}],
)
def test_bad_deadlines_are_refused(options):
    with pytest.raises(ValueError):
        StreamerClient("ws://127.0.0.1:1/", "token", **options)
