"""The `@connections` API as the runtime reaches it: boto3 with only an endpoint override."""

from __future__ import annotations

import asyncio
import urllib.request
from datetime import datetime

import pytest
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import LocalStack
from tests.e2e.wire import eventually, open_socket, receive, run, unique

pytestmark = pytest.mark.e2e


def _error_code(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as raised:
        call()
    error = raised.value.response
    return error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]


def test_unknown_connection_is_gone_for_every_method(local_stack: LocalStack) -> None:
    api = local_stack.client("apigatewaymanagementapi")
    unknown = "AAAAAAAAAAAAAAA="
    assert _error_code(lambda: api.post_to_connection(ConnectionId=unknown, Data=b"{}")) == (
        "GoneException",
        410,
    )
    assert _error_code(lambda: api.get_connection(ConnectionId=unknown)) == ("GoneException", 410)
    assert _error_code(lambda: api.delete_connection(ConnectionId=unknown)) == (
        "GoneException",
        410,
    )


def test_post_get_and_delete_a_live_connection(local_stack: LocalStack) -> None:
    user = unique("managed")
    token = local_stack.token(user, "tenant-e2e")
    api = local_stack.client("apigatewaymanagementapi")

    async def scenario() -> None:
        async with open_socket(local_stack.url(token)) as socket:
            (record,) = await asyncio.to_thread(local_stack.items_of_user, "connections", user)
            connection_id = record["connection_id"]["S"]
            # $connect stored the stack's own endpoint for its API (STREAMER_MANAGEMENT_ENDPOINT)
            assert record["endpoint"] == {"S": local_stack.management_url}

            # POST reaches the socket as a text frame
            await asyncio.to_thread(
                api.post_to_connection, ConnectionId=connection_id, Data=b'{"type":"hello"}'
            )
            assert await receive(socket) == {"type": "hello"}

            # GET describes it
            described = await asyncio.to_thread(api.get_connection, ConnectionId=connection_id)
            assert isinstance(described["ConnectedAt"], datetime)
            assert described["LastActiveAt"] >= described["ConnectedAt"]
            assert described["Identity"]["SourceIp"] == "127.0.0.1"

            # over 128 KiB is refused, and the connection stays
            too_big = b"x" * (128 * 1024 + 1)
            code = await asyncio.to_thread(
                _error_code,
                lambda: api.post_to_connection(ConnectionId=connection_id, Data=too_big),
            )
            assert code == ("PayloadTooLargeException", 413)

            # DELETE closes the socket; afterwards the connection is gone
            deleted = await asyncio.to_thread(api.delete_connection, ConnectionId=connection_id)
            assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
            with pytest.raises(ConnectionClosed):
                await receive(socket)
            code = await asyncio.to_thread(
                _error_code, lambda: api.post_to_connection(ConnectionId=connection_id, Data=b"{}")
            )
            assert code == ("GoneException", 410)
        # and $disconnect ran for it
        await eventually(
            lambda: asyncio.to_thread(local_stack.items_of_user, "connections", user),
            lambda items: items == [],
        )

    run(scenario())


def test_http_url_serves_a_page_naming_the_websocket_url(local_stack: LocalStack) -> None:
    with urllib.request.urlopen(local_stack.http_url, timeout=10) as page:
        assert page.status == 200
        assert page.headers["Content-Type"].startswith("text/html")
        assert local_stack.websocket_url in page.read().decode()


def test_ready_file_names_what_tests_need(local_stack: LocalStack) -> None:
    ready = local_stack.ready
    for name in ("websocket_url", "management_url", "http_url", "dev_token", "dynamodb_endpoint"):
        assert ready[name], name
    assert ready["websocket_url"].startswith("ws://")
    assert set(ready["tables"]) == {"connections", "requests", "subscriptions"}
