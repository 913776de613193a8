"""The gateway over real sockets, with stand-in functions: statuses the runtime never produces."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from local.apigateway import Api
from local.functions import FunctionSpec, LambdaFunction
from local.gateway import Gateway, Integrations, Limits
from local.management import GatewayConnections
from tests.e2e.wire import run

ALLOW = {
    "principalId": "user-a",
    "policyDocument": {
        "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"}]
    },
    "context": {"user_id": "user-a"},
}


class Recorder:
    """Stand-in entry points: answers chosen by the test, events kept for it."""

    def __init__(self, authorize: Callable = lambda e, c: ALLOW) -> None:
        self.events: dict[str, list[dict]] = {"connect": [], "message": [], "disconnect": []}
        self.authorize = authorize
        self.connect_answer: dict = {"statusCode": 200}
        self.answer_connect: Callable = lambda e, c: self.connect_answer
        self.route: Callable = lambda e, c: {"statusCode": 200, "body": e["body"].upper()}
        self.disconnected = asyncio.Event()

    def functions(self, loop: asyncio.AbstractEventLoop) -> Integrations:
        def make(name: str, handler: Callable) -> LambdaFunction:
            return LambdaFunction(FunctionSpec(name, "x.handler", 5), "us-east-1", "1", handler)

        def on_connect(event, context):
            self.events["connect"].append(event)
            return self.answer_connect(event, context)

        def on_message(event, context):
            self.events["message"].append(event)
            return self.route(event, context)

        def on_disconnect(event, context):
            self.events["disconnect"].append(event)
            loop.call_soon_threadsafe(self.disconnected.set)
            return {"statusCode": 200}

        return Integrations(
            authorizer=make("authorizer", self.authorize),
            connect=make("connect", on_connect),
            disconnect=make("disconnect", on_disconnect),
            routes={"$default": make("router", on_message)},
        )


@asynccontextmanager
async def serving(recorder: Recorder) -> AsyncIterator[tuple[Gateway, str]]:
    """A gateway on a free port with the recorder's functions; all closed at the end.

    It yields the URL with a `?token=`, the authorizer's identity source."""
    gateway = Gateway(Api(region="us-east-1"), Limits())
    port = await gateway.bind("127.0.0.1", 0)
    integrations = recorder.functions(asyncio.get_running_loop())
    await gateway.start(integrations)
    try:
        yield gateway, f"ws://127.0.0.1:{port}/?token=t"
    finally:
        await gateway.close()
        functions = [integrations.authorizer, integrations.connect, integrations.disconnect]
        for function in [*functions, *integrations.routes.values()]:
            await asyncio.to_thread(function.close)


async def refusal_status(recorder: Recorder, query: str | None = None, **options) -> int:
    """The handshake's status; `query` replaces the URL's `?token=t` (`""`: no query)."""
    async with serving(recorder) as (_, url):
        if query is not None:
            url = url.split("?")[0] + query
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, **options):
                pass
    return refused.value.response.status_code


def _deny(event, context):
    return {
        **ALLOW,
        "policyDocument": {
            "Statement": [{**ALLOW["policyDocument"]["Statement"][0], "Effect": "Deny"}]
        },
    }


def _crash(event, context):
    raise KeyError("token")


@pytest.mark.parametrize(
    ("authorize", "status"), [(_deny, 403), (_crash, 500)], ids=["deny", "crash"]
)
def test_authorizer_answers_become_handshake_statuses(authorize: Callable, status: int) -> None:
    recorder = Recorder(authorize)
    assert run(refusal_status(recorder)) == status
    assert recorder.events["connect"] == []


def test_connect_refusal_refuses_the_handshake() -> None:
    recorder = Recorder()
    recorder.connect_answer = {"statusCode": 403}
    assert run(refusal_status(recorder)) == 403


def test_message_round_trip_and_disconnect_event() -> None:
    recorder = Recorder()

    async def scenario() -> str:
        async with serving(recorder) as (_, url):
            async with connect(url, compression=None) as socket:
                await socket.send('{"action": "x"}')
                reply = await asyncio.wait_for(socket.recv(), 5)
                await socket.close(4001, "bye")
            await asyncio.wait_for(recorder.disconnected.wait(), 5)
            return reply

    assert run(scenario()) == '{"ACTION": "X"}'
    (connect_event,) = recorder.events["connect"]
    (message_event,) = recorder.events["message"]
    (disconnect_event,) = recorder.events["disconnect"]
    connection_id = connect_event["requestContext"]["connectionId"]
    assert message_event["requestContext"]["connectionId"] == connection_id
    assert message_event["requestContext"]["authorizer"]["user_id"] == "user-a"
    assert message_event["requestContext"]["authorizer"]["principalId"] == "user-a"
    context = disconnect_event["requestContext"]
    assert context["connectionId"] == connection_id
    assert context["disconnectStatusCode"] == 4001
    assert context["disconnectReason"].endswith("custom reason: bye")


def test_failing_route_sends_api_gateways_internal_server_error() -> None:
    recorder = Recorder()
    recorder.route = _crash

    async def scenario() -> dict:
        async with serving(recorder) as (_, url), connect(url, compression=None) as socket:
            await socket.send("{}")
            return json.loads(await asyncio.wait_for(socket.recv(), 5))

    answer = run(scenario())
    assert answer["message"] == "Internal server error"
    assert answer["connectionId"] and answer["requestId"]


def test_management_calls_from_a_handler_thread_do_not_deadlock() -> None:
    """A route that posts to its own connection while the gateway waits for it."""
    recorder = Recorder()

    async def scenario() -> list[str]:
        async with serving(recorder) as (gateway, url):
            connections = GatewayConnections(gateway, asyncio.get_running_loop(), timeout_s=5)

            def post_then_answer(event, context):
                connection_id = event["requestContext"]["connectionId"]
                assert connections.post(connection_id, b"pushed")
                assert connections.describe(connection_id)["identity"]["sourceIp"] == "127.0.0.1"
                return {"statusCode": 200, "body": "answered"}

            recorder.route = post_then_answer
            async with connect(url, compression=None) as socket:
                await socket.send("{}")
                return [await asyncio.wait_for(socket.recv(), 5) for _ in range(2)]

    assert run(scenario()) == ["pushed", "answered"]


def test_gateway_close_runs_disconnect_for_open_connections() -> None:
    recorder = Recorder()

    async def scenario() -> int:
        async with serving(recorder) as (gateway, url), connect(url, compression=None) as socket:
            await gateway.close()
            await socket.wait_closed()
            return socket.protocol.close_rcvd.code

    assert run(scenario()) == 1001
    (event,) = recorder.events["disconnect"]
    assert event["requestContext"]["disconnectStatusCode"] == 1001


def test_a_frame_too_deep_to_select_a_route_goes_to_default() -> None:
    # GIVEN a route that answers with the route key it was called for
    recorder = Recorder()
    recorder.route = lambda e, c: {"statusCode": 200, "body": e["requestContext"]["routeKey"]}
    deep = '{"action": "echo", "x": ' + "[" * 50_000 + "]" * 50_000 + "}"

    async def scenario() -> str:
        async with serving(recorder) as (_, url), connect(url, compression=None) as socket:
            # WHEN a frame nests deeper than route selection can evaluate
            await socket.send(deep)
            return await asyncio.wait_for(socket.recv(), 5)

    # THEN it is routed to $default and answered, not dropped
    assert run(scenario()) == "$default"
    (event,) = recorder.events["message"]
    assert event["body"] == deep


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("", {"Authorization": "Bearer t"}),
        ("?token=", {}),
        ("?tok=t", {}),
        ("?other=1", {"token": "t"}),
    ],
    ids=["bearer-header-only", "empty-token", "other-name", "token-as-header"],
)
def test_without_the_token_query_parameter_the_handshake_is_401_before_the_authorizer(
    query: str, headers: dict
) -> None:
    # GIVEN an authorizer that would allow anyone, and a handshake whose identity
    # source (the `token` query parameter) is missing or empty
    calls: list[dict] = []
    recorder = Recorder(lambda e, c: calls.append(e) or ALLOW)

    # WHEN it connects
    status = run(refusal_status(recorder, query, additional_headers=headers))

    # THEN API Gateway's answer is 401 without calling the authorizer or $connect
    assert status == 401
    assert calls == []
    assert recorder.events["connect"] == []


def test_a_subprotocol_is_agreed_only_when_connect_answers_with_it() -> None:
    # GIVEN a $connect integration that picks the subprotocol `chat` when offered
    recorder = Recorder()

    def pick(event: dict, context: object) -> dict:
        offered = event["headers"].get("Sec-WebSocket-Protocol", "")
        if "chat" in [p.strip() for p in offered.split(",")]:
            return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "chat"}}
        return {"statusCode": 200}

    async def scenario() -> list[str | None]:
        agreed = []
        async with serving(recorder) as (_, url):
            for offer in (["chat", "v2"], ["v2"]):
                async with connect(url, subprotocols=offer, compression=None) as socket:
                    agreed.append(socket.subprotocol)
        return agreed

    recorder.answer_connect = pick

    # WHEN clients offer `chat, v2` and then `v2` alone
    # THEN the first gets `chat`, the one $connect answered; the second none, as on AWS
    assert run(scenario()) == ["chat", None]
    assert [e["headers"]["Sec-WebSocket-Protocol"] for e in recorder.events["connect"]] == [
        "chat, v2",
        "v2",
    ]


def test_frames_whole_and_fragmented_each_invoke_the_route_once_in_order() -> None:
    # GIVEN a route that answers each body, upper-cased
    recorder = Recorder()

    async def scenario() -> list[str]:
        async with serving(recorder) as (_, url), connect(url, compression=None) as socket:
            # WHEN a client sends a whole text frame, then a message in three fragments,
            # each waiting for its answer
            replies = []
            for message in ('{"a": 1}', ['{"b"', ": ", "2}"]):
                await socket.send(message)
                replies.append(await asyncio.wait_for(socket.recv(), 5))
            return replies

    replies = run(scenario())
    # THEN each message was one event, the fragments joined, as API Gateway joins them
    bodies = [(e["body"], e["isBase64Encoded"]) for e in recorder.events["message"]]
    assert bodies == [('{"a": 1}', False), ('{"b": 2}', False)]
    assert replies == ['{"A": 1}', '{"B": 2}']


async def _close_code_after(recorder: Recorder, frame: bytes, *, text: bool) -> int | None:
    """Send `frame` (as a text or binary frame), then a valid text one; the close code
    once the gateway closed the connection and ran `$disconnect`."""
    async with serving(recorder) as (_, url), connect(url, compression=None) as socket:
        await socket.send(frame, text=text)
        await socket.send('{"after": "it"}')
        await asyncio.wait_for(socket.wait_closed(), 5)
        await asyncio.wait_for(recorder.disconnected.wait(), 5)
        return socket.close_code


def test_a_binary_frame_closes_the_connection_with_1003_invoking_nothing() -> None:
    # GIVEN a connected client
    recorder = Recorder()

    # WHEN it sends a binary frame, then a text one
    close_code = run(_close_code_after(recorder, b"\x00\x01", text=False))

    # THEN API Gateway's answer: "If a client app sends a binary frame, API Gateway
    # rejects it and disconnects the client with code 1003" (developer guide, "Binary
    # media types for WebSocket APIs"); no route ran, not even for the frame after it
    assert close_code == 1003
    assert recorder.events["message"] == []
    (disconnect,) = recorder.events["disconnect"]
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1003


def test_a_text_frame_that_is_not_utf8_closes_the_connection_invoking_nothing() -> None:
    # GIVEN a connected client
    recorder = Recorder()

    # WHEN it sends a text frame whose bytes are not UTF-8, and a valid one
    close_code = run(_close_code_after(recorder, b"\xff\xfe", text=True))

    # THEN the gateway closed it as invalid data (1007), and the route never ran, not even
    # for the frame after it
    assert close_code == 1007
    assert recorder.events["message"] == []


def test_a_route_response_to_a_socket_that_cannot_take_it_now_waits_and_is_sent() -> None:
    # GIVEN a connection whose socket's write buffer is full: asyncio's flow control has
    # paused writing to it (`Protocol.pause_writing`)
    recorder = Recorder()

    async def scenario() -> tuple[int, int, str]:
        async with serving(recorder) as (gateway, url), connect(url, compression=None) as socket:
            (session,) = gateway._sessions.values()
            server_side = session.socket
            server_side.pause_writing()
            # WHEN a frame's invocation ends while it is paused
            await socket.send('{"a": 1}')
            for _ in range(500):
                if any(isinstance(f, asyncio.Task) for f in gateway._routing):
                    break
                await asyncio.sleep(0.01)
            waiting = sum(isinstance(f, asyncio.Task) for f in gateway._routing)
            buffered = server_side.transport.get_write_buffer_size()
            # AND the socket can take data again
            server_side.resume_writing()
            return waiting, buffered, await asyncio.wait_for(socket.recv(), 5)

    waiting, buffered, reply = run(scenario())
    # THEN the response waited, unwritten, in a task of its own, and was sent on resuming
    assert (waiting, buffered) == (1, 0)
    assert reply == '{"A": 1}'
