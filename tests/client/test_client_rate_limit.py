"""The connection's message rate limit: refused messages are sent again, a few times."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from client import RateLimited, RequestCancelled, StreamerClient
from tests.client.fake_streamer_server import FakeRequest, FakeStreamer, PageGate, run
from tests.client.test_client_library import FAST_RECONNECT, client_for, report

# What the router's token bucket says when it refuses a frame.
BUCKET = {"limit_per_second": 20, "burst": 20}
# What the per-user cap on running requests says: it lasts until a request ends.
ACTIVE_CAP = {"max_active_requests": 20}
# A refusal the "nothing is resent" tests make, and a wait past its resend's
# latest time (FAST_RECONNECT's jitter included).
SLOW_REFUSAL = BUCKET | {"retry_after_ms": 300}
PAST_THE_RESEND_SECONDS = 0.3 + FAST_RECONNECT.ceiling(0) + 0.2

OnMessage = Callable[[ServerConnection, dict[str, Any]], Awaitable[bool]]


async def refuse(connection: ServerConnection, message: dict[str, Any], details: dict) -> None:
    """Answer `message` as the router does when a limit refuses it: RATE_LIMITED, retryable."""
    error = {"code": "RATE_LIMITED", "message": "slow down", "details": details}
    answer = {"type": "error", "request_id": message["id"], "error": error | {"retryable": True}}
    await connection.send(json.dumps(answer))


def refusing(
    action: str, times: int, details: dict, arrivals: list[float] | None = None
) -> OnMessage:
    """An `on_message` hook refusing the first `times` messages of `action`, noting arrivals."""
    refused: list[str] = []

    async def on_message(connection: ServerConnection, message: dict[str, Any]) -> bool:
        if message.get("action") != action:
            return False
        if arrivals is not None:
            arrivals.append(asyncio.get_running_loop().time())
        if len(refused) >= times:
            return False
        refused.append(message["id"])
        await refuse(connection, message, details)
        return True

    return on_message


def test_a_refused_call_is_sent_again_and_returns():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a connection whose rate limit refuses the first two requests
            server.on_message = refusing("generate_report", 2, BUCKET | {"retry_after_ms": 10})
            # WHEN a report is called
            result = await client.call("generate_report", report(2), request_id="busy-1")
            # THEN the same message went out three times and the call returned its result
            assert result == {"pages": 2, "report_id": "rep-busy-1"}
            sent = server.received_actions("generate_report")
            assert [m["id"] for m in sent] == ["busy-1"] * 3
            assert server.runs["busy-1"] == 1

    run(scenario())


@pytest.mark.parametrize(
    ("retry_after_ms", "least_wait"),
    [(600, 0.6), (10, 0.25)],
    ids=["as-the-server-says", "at-least-a-quarter-second"],
)
def test_the_resend_waits_for_the_bucket(retry_after_ms, least_wait):
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a refusal naming how long until the bucket has a token again
            arrivals: list[float] = []
            details = BUCKET | {"retry_after_ms": retry_after_ms}
            server.on_message = refusing("echo", 1, details, arrivals)
            # WHEN a sync action is sent
            assert await client.send("echo", {"n": 1}) == {"echo": {"n": 1}}
            # THEN the resend came no sooner than that, and never sooner than 250 ms
            first, again = arrivals
            assert again - first >= least_wait

    run(scenario())


@pytest.mark.parametrize("retries", [0, 2])
def test_after_rate_limit_retries_refusals_the_caller_gets_rate_limited(retries):
    async def scenario():
        async with (
            FakeStreamer() as server,
            client_for(server, rate_limit_retries=retries) as client,
        ):
            # GIVEN a connection whose rate limit refuses every request
            details = BUCKET | {"retry_after_ms": 10}
            server.on_message = refusing("echo", 100, details)
            # WHEN a call is made
            with pytest.raises(RateLimited) as caught:
                await client.call("echo", {}, request_id="never")
            # THEN it was sent once and again `retries` times, then the error says why
            assert len(server.received_actions("echo")) == 1 + retries
            error = caught.value
            assert (error.code, error.retryable, error.request_id) == (
                "RATE_LIMITED",
                True,
                "never",
            )
            assert error.details == details

    run(scenario())


def test_the_per_user_cap_on_running_requests_is_not_retried():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a user at the cap on running requests (RATE_LIMITED, retryable too)
            server.on_message = refusing("generate_report", 1, ACTIVE_CAP)
            # WHEN one more report is called
            with pytest.raises(RateLimited) as caught:
                await client.call("generate_report", report(1))
            # THEN the caller gets the error at once: it lasts until a request ends
            assert caught.value.details == ACTIVE_CAP
            assert len(server.received_actions("generate_report")) == 1

    run(scenario())


SYSTEM_ACTIONS: dict[str, Callable[[StreamerClient, str], Awaitable[Any]]] = {
    "status": lambda client, request_id: client.status(request_id),
    "subscribe": lambda client, request_id: client.subscribe(request_id),
    "cancel": lambda client, request_id: client.cancel(request_id),
    "unsubscribe": lambda client, request_id: client.unsubscribe(request_id),
    "ping": lambda client, _: client.ping(),
}


@pytest.mark.parametrize("action", SYSTEM_ACTIONS)
def test_a_refused_system_action_is_sent_again(action):
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a report (its generated id needs no subscribe), finished, or for
            # `cancel` held at its first page (a finished one needs no cancel: the
            # subscribe's snapshot already says how it ended), and a rate limit
            # refusing the first `action`
            if action == "cancel":
                server.before_page = PageGate(page=1)
                running = asyncio.create_task(client.call("generate_report", report(2)))
                await server.before_page.reached.wait()
            else:
                await client.call("generate_report", report(1))
            [request_id] = server.requests
            server.on_message = refusing(action, 1, BUCKET | {"retry_after_ms": 10})
            # WHEN the client does that action
            doing = asyncio.create_task(SYSTEM_ACTIONS[action](client, request_id))
            if action == "cancel":
                # (the held report notices the cancel at its next page)
                await server.wait_until(lambda: len(server.received_actions("cancel")) == 2)
                server.before_page.opened.set()
                with pytest.raises(RequestCancelled):
                    await running
            await doing
            # THEN it was answered after the same message went out again
            first, again = server.received_actions(action)
            assert first == again

    run(scenario())


def test_a_resume_over_the_bucket_still_completes_every_call():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN five reports held before their first page, one request whose
            # message was lost, and a new connection whose bucket admits two
            # messages, then refuses each message the first time it comes
            ids = ["lost", *(f"run-{n}" for n in range(5))]
            running = asyncio.Event()
            followed: set[str] = set()
            resumed: Counter[str] = Counter()
            release = asyncio.Event()

            async def before_page(request: FakeRequest, page: int) -> None:
                if len(server.runs) == len(ids) - 1:
                    running.set()
                await release.wait()

            async def on_message(connection: ServerConnection, message: dict[str, Any]) -> bool:
                if server.handshakes == 1:
                    return message["id"] == "lost"
                resumed[message["id"]] += 1
                if resumed.total() > 2 and resumed[message["id"]] == 1:
                    await refuse(connection, message, BUCKET | {"retry_after_ms": 10})
                    return True
                # The fake adds the subscriber (or creates the request) before
                # the held reports get to run.
                followed.add(message.get("request_id") or message["id"])
                if followed == set(ids):
                    release.set()
                return False

            server.before_page = before_page
            server.on_message = on_message
            calls = [
                asyncio.create_task(client.call("generate_report", report(1), request_id=id_))
                for id_ in ids
            ]
            await running.wait()
            # WHEN the connection drops
            server.drop_connections()
            # THEN every call returns its result once the resume got through,
            # each request ran once, and no message needed more than one resend
            results = await asyncio.gather(*calls)
            assert [result["report_id"] for result in results] == [f"rep-{id_}" for id_ in ids]
            assert all(server.runs[id_] == 1 for id_ in ids)
            assert set(resumed.values()) == {1, 2}

    run(scenario())


def test_a_request_refused_on_start_and_on_resume_gets_its_retries_each_time():
    async def scenario():
        async with FakeStreamer() as server, client_for(server, rate_limit_retries=1) as client:
            # GIVEN one retry allowed, a report refused once when it starts, and
            # its re-subscribe refused once after a drop
            gate = PageGate(page=1)
            server.before_page = gate
            refuse_start = refusing("generate_report", 1, BUCKET | {"retry_after_ms": 10})
            refuse_resume = refusing("subscribe", 1, BUCKET | {"retry_after_ms": 10})

            async def on_message(connection: ServerConnection, message: dict[str, Any]) -> bool:
                if server.handshakes == 1:
                    return await refuse_start(connection, message)
                return await refuse_resume(connection, message)

            server.on_message = on_message
            calling = asyncio.create_task(client.call("generate_report", report(1)))
            await gate.reached.wait()
            await client.ping()  # answered after the acknowledgment: the client has read it
            # WHEN the connection drops while the report runs
            server.drop_connections()
            gate.opened.set()
            # THEN the call still returns: the answer in between started a new count
            assert (await calling)["pages"] == 1
            assert len(server.received_actions("generate_report")) == 2
            assert len(server.received_actions("subscribe")) == 2

    run(scenario())


def test_nothing_is_resent_for_a_call_that_has_ended():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a refused status whose caller gives up before the resend is due
            await client.call("generate_report", report(1), request_id="gone-1")
            server.on_message = refusing("status", 1, SLOW_REFUSAL)
            asking = asyncio.create_task(client.status("gone-1"))
            await client.ping()  # answered after the refusal: the client has read it
            asking.cancel()
            # WHEN the resend would have been due
            await asyncio.sleep(PAST_THE_RESEND_SECONDS)
            # THEN nothing went out again
            assert len(server.received_actions("status")) == 1

    run(scenario())


def test_nothing_is_resent_on_a_connection_since_replaced():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a refused status, then a drop; the new connection's server
            # keeps the status unanswered, so it is still awaited
            await client.call("generate_report", report(1), request_id="moved-1")
            refuse_first = refusing("status", 1, SLOW_REFUSAL)

            async def on_message(connection: ServerConnection, message: dict[str, Any]) -> bool:
                if server.handshakes > 1:
                    return message.get("action") == "status"
                return await refuse_first(connection, message)

            server.on_message = on_message
            asking = asyncio.create_task(client.status("moved-1"))
            await client.ping()  # answered after the refusal: the client has read it
            server.drop_connections()
            # WHEN the resume sends the status and the resend would have been due
            await server.wait_until(lambda: len(server.received_actions("status")) == 2)
            await asyncio.sleep(PAST_THE_RESEND_SECONDS)
            # THEN the resume's was the only one sent again
            assert len(server.received_actions("status")) == 2
            asking.cancel()

    run(scenario())


def test_rate_limit_retries_must_not_be_negative():
    # GIVEN / WHEN a negative retry count / THEN the client refuses it
    with pytest.raises(ValueError):
        StreamerClient("ws://127.0.0.1:1/", "token", rate_limit_retries=-1)
