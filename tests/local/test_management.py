"""`@connections` answers with API Gateway's status codes and error types."""

from __future__ import annotations

import json
import socket

import pytest

from local import management


class Connections:
    """A gateway with one live connection, `live=`, recording what reached it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.deleted: list[str] = []

    def post(self, connection_id: str, data: bytes) -> bool:
        if connection_id != "live=":
            return False
        self.sent.append((connection_id, data))
        return True

    def describe(self, connection_id: str) -> dict | None:
        if connection_id != "live=":
            return None
        return {"connectedAt": "2026-01-01T00:00:00.000Z", "identity": {"sourceIp": "127.0.0.1"}}

    def delete(self, connection_id: str) -> bool:
        if connection_id != "live=":
            return False
        self.deleted.append(connection_id)
        return True


def answer(method: str, path: str, body: bytes = b"") -> management.HttpResponse | None:
    return management.handle(method, path, body, Connections())


def test_post_to_a_live_connection_is_200_and_sends_the_bytes() -> None:
    connections = Connections()
    response = management.handle("POST", "/@connections/live%3D", b'{"a":1}', connections)
    assert response.status == 200
    assert connections.sent == [("live=", b'{"a":1}')]


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
def test_unknown_connection_is_410_gone_for_every_method(method: str) -> None:
    response = answer(method, "/@connections/gone%3D", b"{}")
    assert response.status == 410
    # boto3 maps the error by this header, not by the status.
    assert response.headers["x-amzn-ErrorType"] == "GoneException"
    assert "message" in json.loads(response.body)


def test_post_over_128_kib_is_413_and_sends_nothing() -> None:
    connections = Connections()
    response = management.handle(
        "POST", "/@connections/live%3D", b"x" * (128 * 1024 + 1), connections
    )
    assert response.status == 413
    assert response.headers["x-amzn-ErrorType"] == "PayloadTooLargeException"
    assert connections.sent == []
    at_limit = management.handle("POST", "/@connections/live%3D", b"x" * 128 * 1024, connections)
    assert at_limit.status == 200


def test_get_describes_the_connection_as_json() -> None:
    response = answer("GET", "/@connections/live%3D")
    assert response.status == 200
    assert json.loads(response.body)["identity"] == {"sourceIp": "127.0.0.1"}


def test_delete_is_204() -> None:
    connections = Connections()
    response = management.handle("DELETE", "/@connections/live%3D", b"", connections)
    assert response.status == 204
    assert response.body == b""
    assert connections.deleted == ["live="]


def test_stage_prefixed_path_as_on_aws_is_accepted() -> None:
    assert answer("GET", "/prod/@connections/live%3D").status == 200


def test_other_methods_are_forbidden_and_other_paths_are_not_the_apis() -> None:
    assert answer("PUT", "/@connections/live%3D").status == 403
    assert answer("GET", "/") is None
    assert answer("GET", "/@connections/") is None
    assert answer("GET", "/@connections/a/b") is None


def test_a_burst_of_connections_waits_for_the_server_instead_of_being_refused() -> None:
    # GIVEN the management port, listening while its one accepting thread is busy (here:
    # not started yet), as when a burst's processors all post their `complete` at once
    server = management.HttpServer("127.0.0.1", 0, lambda method, path: management.GONE)
    clients = []
    try:
        # WHEN many more clients connect than a default listen backlog holds
        for _ in range(64):
            clients.append(socket.create_connection(("127.0.0.1", server.port), timeout=2))
        server.start(Connections())
        for client in clients:
            client.sendall(b"POST /@connections/live%3D HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")

        # THEN every one of them is served once the server gets to it
        answers = [client.makefile("rb").readline() for client in clients]
    finally:
        for client in clients:
            client.close()
        server.close()
    assert answers == [b"HTTP/1.1 200 OK\r\n"] * 64


def test_posts_of_one_client_reuse_its_connection_and_close_ends_an_idle_one() -> None:
    # GIVEN the management port and a client that keeps its connection, as botocore does
    connections = Connections()
    server = management.HttpServer("127.0.0.1", 0, lambda method, path: management.GONE)
    server.start(connections)
    client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        replies = client.makefile("rb")
        statuses = []
        # WHEN it posts twice on that one connection
        for data in (b'{"n":1}', b'{"n":2}'):
            client.sendall(
                b"POST /@connections/live%3D HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n"
                + data
            )
            statuses.append(replies.readline())
            while replies.readline() not in (b"\r\n", b""):
                pass
        # THEN both are answered and delivered, and closing the server with the connection
        # still open and idle ends it (no thread waits out the idle timeout)
        server.close()
        ended = replies.read()
    finally:
        client.close()
    assert statuses == [b"HTTP/1.1 200 OK\r\n"] * 2
    assert connections.sent == [("live=", b'{"n":1}'), ("live=", b'{"n":2}')]
    assert ended == b""
