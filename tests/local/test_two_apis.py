"""Two WebSocket APIs played locally: each connection is reached through its own API.

Real sockets, the real `$connect` and `$disconnect` entry points (DynamoDB mocked
in-process), each API with its own `@connections` server, and the runtime's own
delivery posting to what `$connect` stored.
"""

from __future__ import annotations

import asyncio

import pytest

from local.apigateway import Api
from local.functions import FunctionSpec, LambdaFunction
from local.gateway import Gateway, Integrations, Limits
from local.management import GatewayConnections, HttpResponse, HttpServer
from streamer import config, runtime
from streamer.delivery import Sent
from streamer.entry import connect, disconnect
from tests.e2e.wire import open_socket, receive, run
from tests.functional import helpers


def _allow(user: str):
    def authorize(event, context):
        return {
            "principalId": user,
            "policyDocument": {
                "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"}]
            },
            "context": {"user_id": user, "tenant_id": "tenant-1", "permissions": ""},
        }

    return authorize


def _function(name: str, handler, region: str) -> LambdaFunction:
    return LambdaFunction(FunctionSpec(name, f"{name}.handler", 10), region, "1", handler)


class ServedApi:
    """One API: its gateway (authorizing everyone as `user`) and its `@connections` server."""

    def __init__(self, api: Api, user: str) -> None:
        self.api = api
        self.user = user
        self.gateway = Gateway(api, Limits())
        self.management = HttpServer("127.0.0.1", 0, lambda method, path: HttpResponse(404))
        self.functions = Integrations(
            authorizer=_function("authorizer", _allow(user), api.region),
            connect=_function("connect", connect.handler, api.region),
            disconnect=_function("disconnect", disconnect.handler, api.region),
            routes={"$default": _function("router", lambda e, c: {"statusCode": 200}, api.region)},
        )
        self.url = ""

    @property
    def override(self) -> str:
        return f"{self.api.api_id}=http://127.0.0.1:{self.management.port}"

    async def start(self) -> None:
        port = await self.gateway.bind("127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{port}/?token=t"
        await self.gateway.start(self.functions)
        self.management.start(GatewayConnections(self.gateway, asyncio.get_running_loop()))

    async def close(self) -> None:
        await self.gateway.close()
        await asyncio.to_thread(self.management.close)
        functions = [self.functions.authorizer, self.functions.connect, self.functions.disconnect]
        for function in [*functions, *self.functions.routes.values()]:
            await asyncio.to_thread(function.close)


def test_two_apis_each_reach_their_own_connections(aws, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN two APIs (two regions), each with its own local management endpoint
    east = ServedApi(Api(region="us-east-1", api_id="eastapi001", stage="local"), "alice")
    west = ServedApi(Api(region="eu-west-1", api_id="westapi002", stage="local"), "bob")
    monkeypatch.setenv(config.MANAGEMENT_ENDPOINT, f"{east.override},{west.override}")
    runtime.reset()

    async def scenario() -> tuple[list, dict, dict, list]:
        for served in (east, west):
            await served.start()
        try:
            async with open_socket(east.url) as alice, open_socket(west.url) as bob:
                # WHEN one function posts to each connection what `$connect` stored for it
                records = await asyncio.to_thread(helpers.connections)
                delivery = runtime.current().delivery
                sent = [
                    await asyncio.to_thread(
                        delivery.send,
                        record["connection_id"]["S"],
                        record["endpoint"]["S"],
                        {"type": "hello", "to": record["user_id"]["S"]},
                    )
                    for record in records
                ]
                heard = {"alice": await receive(alice), "bob": await receive(bob)}
                endpoints = {r["user_id"]["S"]: r["endpoint"]["S"] for r in records}
                remaining = await asyncio.to_thread(helpers.connections)
        finally:
            for served in (east, west):
                await served.close()
        return sent, heard, endpoints, remaining

    sent, heard, endpoints, remaining = run(scenario())

    # THEN each connection stored its own API's endpoint, and each message arrived
    assert endpoints == {
        "alice": f"http://127.0.0.1:{east.management.port}",
        "bob": f"http://127.0.0.1:{west.management.port}",
    }
    assert sent == [Sent.DELIVERED, Sent.DELIVERED]
    assert heard == {
        "alice": {"type": "hello", "to": "alice"},
        "bob": {"type": "hello", "to": "bob"},
    }
    # AND no connection was forgotten as gone while it was open
    assert len(remaining) == 2
