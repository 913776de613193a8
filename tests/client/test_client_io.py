"""The I/O around the conversation machine, against the scripted server: the token
provider, state events, dead connections found by the keepalive, topics' API errors."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from client import (
    ConnectionRefused,
    ReconnectPolicy,
    StateChanged,
    StreamerClient,
    TokenFailed,
)
from tests.client.fake_streamer_server import VALID_TOKEN, FakeStreamer, run

FAST = ReconnectPolicy(initial_delay=0.001, max_delay=0.01)


def test_an_async_token_provider_is_asked_before_every_connect():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN a provider whose first token has expired (401), then valid ones
            handed = iter(["expired", VALID_TOKEN, VALID_TOKEN, VALID_TOKEN])
            calls: list[str] = []

            async def provider() -> str:
                calls.append(next(handed))
                return calls[-1]

            client = StreamerClient(server.url, provider, reconnect=FAST, heartbeat_interval=None)
            async with client:
                # WHEN it connects, and later the server drops the connection
                assert await client.call("echo", {"n": 1}) == {"echo": {"n": 1}}
                server.drop_connections()
                # THEN the first connect got one new token after the 401, the
                # reconnect a fresh one, and calls go on working
                assert await client.call("echo", {"n": 2}) == {"echo": {"n": 2}}
            assert calls == ["expired", VALID_TOKEN, VALID_TOKEN]
            assert server.handshakes == 2

    run(scenario())


@pytest.mark.parametrize(
    ("provider_answers", "error_type", "code"),
    [
        (["expired", "expired"], ConnectionRefused, "UNAUTHORIZED"),
        ([], TokenFailed, "TOKEN_FAILED"),
    ],
    ids=["refused-twice", "provider-raises"],
)
def test_a_first_connect_the_provider_cannot_fix_fails_fast(provider_answers, error_type, code):
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN a provider whose tokens are refused twice, or that raises
            answers = iter(provider_answers)

            def provider() -> str:
                return next(answers)

            client = StreamerClient(server.url, provider, heartbeat_interval=None)
            failed: list[StateChanged] = []
            client.on("failed", failed.append)
            # WHEN the client connects / THEN it fails at once with the reason
            with pytest.raises(error_type) as caught:
                await client.connect()
            assert caught.value.code == code
            assert client.state == "failed"
            assert [event.error.code for event in failed if event.error] == [code]
            await client.close()

    run(scenario())


def test_a_silent_connection_is_found_dead_by_the_keepalive_and_replaced():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN a server that stops answering anything on the first connection
            async def on_message(connection: ServerConnection, message: dict[str, Any]) -> bool:
                return server.handshakes == 1

            server.on_message = on_message
            client = StreamerClient(
                server.url, VALID_TOKEN, reconnect=FAST, heartbeat_interval=0.05, pong_timeout=0.2
            )
            states: list[str] = []
            client.on("statechange", lambda change: states.append(change.state))
            async with client:
                # WHEN a call waits on it
                result = await client.call("echo", {"x": 1})
                # THEN the keepalive found it dead, the client reconnected and the call
                # was answered on the new connection
                assert result == {"echo": {"x": 1}}
                assert server.handshakes == 2
                assert states[:4] == ["connecting", "connected", "disconnected", "connecting"]
                assert client.state == "connected"

    run(scenario())


def test_unknown_events_and_topic_names_are_refused_before_anything_is_sent():
    async def scenario():
        async with (
            FakeStreamer() as server,
            StreamerClient(server.url, VALID_TOKEN, heartbeat_interval=None) as client,
        ):
            # GIVEN a connected client / WHEN it is given a bad event or topic name
            # THEN it says so at once
            with pytest.raises(ValueError):
                client.on("tuesday", print)
            with pytest.raises(ValueError):
                await client.subscribe_topic("no spaces", print)
            assert server.received_actions("subscribe") == []

    run(scenario())
