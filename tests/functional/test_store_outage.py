"""A DynamoDB the store cannot reach: every call raises `StoreUnavailable`, nothing else.

The store is pointed at a local socket that misbehaves the ways a network
does: it accepts and hangs up (botocore's `ConnectionClosedError`), or accepts
and never answers (`ReadTimeoutError`), or nothing listens (`EndpointConnectionError`).
Both of the first two are `HTTPClientError`s whose `response` is None, which
PynamoDB's `cause_response_code` cannot read.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from streamer import aws, store
from streamer.models import Connection, RequestItem, Subscription, bind_models, owner_key
from tests.conftest import closed_port


class Unreachable:
    """A TCP endpoint that accepts connections and then hangs up or stays silent."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self._server = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        self._stopped = threading.Event()
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            if self.behaviour == "hang up":
                connection.close()
            else:
                self._held.append(connection)

    def close(self) -> None:
        self._stopped.set()
        self._server.close()
        for connection in self._held:
            connection.close()


@pytest.fixture(params=["hang up", "never answer", "nothing listens"])
def unreachable_dynamodb(
    request: pytest.FixtureRequest, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    endpoint = None
    if request.param == "nothing listens":
        port = closed_port()
    else:
        endpoint = Unreachable(request.param)
        port = endpoint.port
    bind_models("connections", "requests", "subscriptions", "us-east-1")
    # One attempt, short timeouts: this test is about the error, not the wait. The
    # runtime's call budget (streamer.aws) decides the client's timeouts and attempts,
    # over PynamoDB's own settings, so the budget's variables are what shorten them.
    monkeypatch.setenv(aws.CONNECT_TIMEOUT_S, "0.5")
    monkeypatch.setenv(aws.READ_TIMEOUT_S, "0.3")
    monkeypatch.setenv(aws.MAX_ATTEMPTS, "1")
    for model in (Connection, RequestItem, Subscription):
        monkeypatch.setattr(model.Meta, "host", f"http://127.0.0.1:{port}", raising=False)
    yield
    if endpoint is not None:
        endpoint.close()
    for model in (Connection, RequestItem, Subscription):
        model._connection = None


def new_request() -> RequestItem:
    owner = owner_key("t1", "alice")
    return RequestItem(
        f"{owner}#r-1",
        owner=owner,
        request_id="r-1",
        tenant_id="t1",
        user_id="alice",
        action="explode",
        status="PENDING",
        origin_region="us-east-1",
        created_at=1,
        updated_at=1,
        ttl=1,
    )


CALLS: dict[str, Callable[[], object]] = {
    "read a request": lambda: store.get_request(owner_key("t1", "alice"), "r-1"),
    "create a request": lambda: store.create_request(new_request()),
    "claim a request": lambda: store.claim_request(new_request(), 2, 3),
    "query the due index": lambda: store.due_requests("us-east-1", 10),
    "count active requests": lambda: store.count_active(owner_key("t1", "alice")),
    "read a connection": lambda: store.get_connection("conn-1"),
    "touch a connection": lambda: store.touch_connection("conn-1", 1, 2),
    "list subscribers": lambda: store.subscribers(owner_key("t1", "alice"), "r-1"),
    "forget a connection": lambda: store.forget_connection("conn-1"),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_every_store_call_raises_store_unavailable_when_dynamodb_is_unreachable(
    unreachable_dynamodb, call
):
    with pytest.raises(store.StoreUnavailable):
        call()
