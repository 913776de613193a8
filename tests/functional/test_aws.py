"""One botocore session per process, shared by PynamoDB's models and the runtime's clients."""

from __future__ import annotations

import threading

from streamer import aws
from streamer.models import Connection, RequestItem, Subscription, bind_models


def test_models_share_the_process_session_and_racing_threads_get_one_client(test_app):
    # GIVEN freshly bound models (no client yet)
    bind_models("c", "r", "s", "us-east-1")
    connection = Connection._get_connection().connection
    start = threading.Barrier(8)
    clients = []

    def first_call() -> None:
        start.wait()
        clients.append(connection.client)

    # WHEN eight threads reach the connection's first call at once
    threads = [threading.Thread(target=first_call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN they got one client, and every model's connection uses the process's session
    assert len({id(client) for client in clients}) == 1
    for model in (Connection, RequestItem, Subscription):
        assert model._get_connection().connection.session is aws.session()


def test_binding_again_does_not_wrap_pynamodb_again(test_app):
    import pynamodb.connection.base as base

    bind_models("c", "r", "s", "us-east-1")
    wrapped = base.Connection.client.fget
    bind_models("c2", "r2", "s2", "us-east-1")

    assert base.Connection.client.fget is wrapped


def test_each_budget_gets_a_client_with_its_timeouts_and_retries(test_app):
    # GIVEN freshly bound models
    bind_models("c", "r", "s", "us-east-1")
    connection = RequestItem._get_connection().connection

    # WHEN calls are made under the router's budget and under none
    with aws.dynamodb_budget(aws.ROUTER):
        router_client = connection.client
        assert connection.client is router_client
    default_client = connection.client

    # THEN each has its budget's timeouts and attempts; the router retries in botocore's
    # standard mode, the others also back off client-side on throttling (adaptive)
    assert router_client is not default_client
    assert (aws.ROUTER.retry_mode, aws.PATIENT.retry_mode) == ("standard", "adaptive")
    for client, budget in ((router_client, aws.ROUTER), (default_client, aws.PATIENT)):
        assert client.meta.config.connect_timeout == budget.connect_timeout_s
        assert client.meta.config.read_timeout == budget.read_timeout_s
        assert client.meta.config.retries == {
            "mode": budget.retry_mode,
            "total_max_attempts": budget.max_attempts,
        }
    # and the router gives up on DynamoDB well inside API Gateway's 29 s
    worst_s = aws.ROUTER.max_attempts * (aws.ROUTER.connect_timeout_s + aws.ROUTER.read_timeout_s)
    assert worst_s < 10


def test_the_router_entry_point_calls_dynamodb_under_the_router_budget(
    test_app, management, monkeypatch
):
    from streamer import store
    from tests.functional.helpers import Client

    # GIVEN a router function whose environment shortens the read timeout
    monkeypatch.setenv(aws.READ_TIMEOUT_S, "1.5")
    client = Client("conn-budget")
    client.connect()
    seen = []
    touch = store.touch_connection
    monkeypatch.setattr(
        store,
        "touch_connection",
        lambda *args: seen.append(aws.current_budget()) or touch(*args),
    )

    # WHEN a message makes the router call the store
    assert client.send({"action": "ping"})["type"] == "pong"

    # THEN the call ran under the router's budget, as the environment changed it
    assert seen == [aws.CallBudget(connect_timeout_s=1, read_timeout_s=1.5, max_attempts=2)]
