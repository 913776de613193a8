"""The Python client living through real life on `python -m local`: expiring tokens, the
gateway's maximum connection duration, a long network loss, topics across reconnects.

The stack runs with a maximum connection duration of a few seconds (`--max-duration`,
2 hours by default as on AWS), and each client is told the same limit, as it is told
API Gateway's on AWS. Every request's `complete` must reach its caller exactly once:
a call resolves once, and its progress arrives in strictly increasing `seq` order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from client import Notification, Progress, ReconnectPolicy, StateChanged, StreamerClient
from tests.e2e.conftest import LocalStack, start_stack
from tests.e2e.wire import eventually, run, unique

pytestmark = pytest.mark.e2e

TENANT = "tenant-e2e"
MAX_DURATION_S = 5
DEADLINE_S = 90
FAST = ReconnectPolicy(initial_delay=0.1, max_delay=0.5, suspend_after=1.0, suspended_retry=1.0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    directory = tmp_path_factory.mktemp("long-life")
    with start_stack(directory, "--max-duration", str(MAX_DURATION_S)) as local:
        yield local


def client_for(url: str, token: Any, **options: Any) -> StreamerClient:
    options.setdefault("reconnect", FAST)
    options.setdefault("heartbeat_interval", None)
    return StreamerClient(url, token, max_connection_s=MAX_DURATION_S, rotate_before_s=2, **options)


def states_of(client: StreamerClient) -> list[str]:
    seen: list[str] = []
    for name in ("connecting", "connected", "disconnected", "suspended", "failed"):
        client.on(name, lambda event, seen=seen: seen.append(event.state))
    return seen


def strictly_increasing(progress: list[Progress]) -> bool:
    seqs = [p.seq for p in progress]
    return seqs == sorted(set(seqs))


def test_a_token_that_expires_mid_request_is_renewed_and_complete_arrives_once(
    stack: LocalStack,
) -> None:
    user = unique("renew")
    issued: list[str] = []

    def provider() -> str:
        # Tokens that live 3 seconds: the request outlives two of them.
        issued.append(stack.token(user, TENANT, ttl=3))
        return issued[-1]

    async def scenario() -> tuple[Any, list[Progress], list[str]]:
        seen: list[Progress] = []
        async with asyncio.timeout(DEADLINE_S), client_for(stack.websocket_url, provider) as client:
            states = states_of(client)
            # GIVEN a request that runs 8 s on a connection whose token expires in 3
            # WHEN it runs to its end
            result = await client.call(
                "generate_report", {"pages": 16, "page_ms": 500}, on_progress=seen.append
            )
        return result, seen, states

    result, seen, states = run(scenario())
    # THEN fresh tokens were fetched for new connections made before each expiry
    assert len(issued) >= 3
    # AND the call got its result once, every update once and in order, never disconnected
    assert result["pages"] == 16
    assert seen and strictly_increasing(seen)
    assert "disconnected" not in states


def test_the_connection_is_rotated_before_the_gateways_maximum_duration(
    stack: LocalStack,
) -> None:
    user = unique("rotate")
    token = stack.token(user, TENANT)

    async def scenario() -> tuple[list[Any], list[list[Progress]], list[str], int]:
        opened: list[str] = []

        def provider() -> str:
            opened.append(token)
            return token

        seen: list[list[Progress]] = [[], []]
        async with asyncio.timeout(DEADLINE_S), client_for(stack.websocket_url, provider) as client:
            states = states_of(client)
            # GIVEN two requests running three times longer than a connection may live
            calls = [
                client.call(
                    "generate_report", {"pages": 30, "page_ms": 500}, on_progress=seen[i].append
                )
                for i in range(2)
            ]
            # WHEN they run to their end
            results = await asyncio.gather(*calls)
        return results, seen, states, len(opened)

    results, seen, states, opened = run(scenario())
    # THEN the client replaced its connection before the gateway closed it, several times
    assert opened >= 4
    assert "disconnected" not in states
    # AND each call got its result, its updates once and in order
    assert [r["pages"] for r in results] == [30, 30]
    assert all(updates and strictly_increasing(updates) for updates in seen)


class Outage:
    """A TCP proxy in front of the stack's gateway: `cut()` is the network going away
    (every connection dropped, new ones refused), `restore()` its return."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._pipes):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, upstream_writer))

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(copy(reader, upstream_writer), copy(upstream_reader, writer))
        self._pipes.difference_update((writer, upstream_writer))


def test_a_long_network_loss_ends_connected_with_every_complete(stack: LocalStack) -> None:
    user = unique("outage")
    token = stack.token(user, TENANT)

    async def scenario() -> tuple[list[Any], list[str], str]:
        outage = Outage(stack.websocket_url)
        await outage.restore()
        # Suspended after 1 s away, as after 2 minutes by default; the outage lasts
        # past that threshold, as a 5-minute one would past the default.
        async with asyncio.timeout(DEADLINE_S), client_for(outage.url, token) as client:
            states = states_of(client)
            # GIVEN three requests running
            calls = [
                asyncio.create_task(client.call("generate_report", {"pages": 4, "page_ms": 500}))
                for _ in range(3)
            ]
            await eventually(
                lambda: asyncio.to_thread(stack.items_of_user, "requests", user),
                lambda items: len(items) == 3,
            )
            # WHEN the network goes away until the client is suspended, then comes back
            await outage.cut()
            await eventually(lambda: _now(states), lambda now: "suspended" in now)
            await outage.restore()
            # THEN every call returns its result and the client is connected
            results = await asyncio.gather(*calls)
            state = client.state
        await outage.cut()
        return results, states, state

    results, states, state = run(scenario())
    assert [r["pages"] for r in results] == [4, 4, 4]
    assert state == "connected"
    assert states.index("disconnected") < states.index("suspended")
    assert states[-1] == "connected"


async def _now(states: list[str]) -> list[str]:
    return list(states)


def publish(stack: LocalStack, detail: dict[str, Any]) -> dict[str, Any]:
    entry = {
        "Source": "tests.client",
        "DetailType": "Real-time Notification",
        "Detail": json.dumps(detail),
    }
    request = urllib.request.Request(
        stack.ready["eventbridge_ingress_url"], data=json.dumps(entry).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def test_topics_survive_reconnects(stack: LocalStack) -> None:
    user, topic = unique("topics"), unique("job")
    token = stack.token(user, TENANT)

    async def scenario() -> tuple[list[Notification], list[Notification]]:
        of_topic: list[Notification] = []
        every: list[Notification] = []
        async with asyncio.timeout(DEADLINE_S), client_for(stack.websocket_url, token) as client:
            client.on("notification", every.append)
            # GIVEN a topic followed, and its first notification delivered
            await client.subscribe_topic(topic, of_topic.append)
            await asyncio.to_thread(
                publish, stack, {"tenant_id": TENANT, "topic": topic, "event": "first"}
            )
            await eventually(lambda: _copy(of_topic), lambda got: len(got) == 1)
            [before] = await asyncio.to_thread(stack.items_of_user, "connections", user)
            reconnected = asyncio.Event()
            client.on("connected", lambda _: reconnected.set())
            # WHEN the gateway drops the connection and the client reconnects
            await asyncio.to_thread(
                stack.client("apigatewaymanagementapi").delete_connection,
                ConnectionId=before["connection_id"]["S"],
            )
            await asyncio.wait_for(reconnected.wait(), 30)
            [after] = await eventually(
                lambda: asyncio.to_thread(stack.items_of_user, "connections", user),
                lambda items: len(items) == 1 and items[0] != before,
            )
            await eventually(
                lambda: asyncio.to_thread(stack.items, "subscriptions"),
                lambda items: after["connection_id"]["S"] in json.dumps(items),
            )
            # THEN a notification published now reaches the topic's callback, once
            await asyncio.to_thread(
                publish, stack, {"tenant_id": TENANT, "topic": topic, "event": "second"}
            )
            # AND one sent to the user arrives as the `notification` event
            await asyncio.to_thread(
                publish, stack, {"tenant_id": TENANT, "user_id": user, "event": "for-you"}
            )
            await eventually(lambda: _copy(every), lambda got: len(got) == 3)
        return of_topic, every

    of_topic, every = run(scenario())
    assert [n.event for n in of_topic] == ["first", "second"]
    assert [n.event for n in every] == ["first", "second", "for-you"]
    assert every[2].topic is None


async def _copy(items: list[Any]) -> list[Any]:
    return list(items)


def test_state_events_carry_the_state_changed(stack: LocalStack) -> None:
    token = stack.token(unique("states"), TENANT)

    async def scenario() -> list[StateChanged]:
        events: list[StateChanged] = []
        client = client_for(stack.websocket_url, token)
        for name in ("connecting", "connected", "closed"):
            client.on(name, events.append)
        # GIVEN / WHEN a client connects and closes
        async with asyncio.timeout(DEADLINE_S), client:
            pass
        return events

    # THEN it went through connecting, connected and closed, each with its event
    assert [e.state for e in run(scenario())] == ["connecting", "connected", "closed"]
