"""One botocore session per process, shared by PynamoDB's models and the runtime's clients."""

from __future__ import annotations

import threading

from streamer import aws
from streamer.delivery import Delivery
from streamer.lifecycle import LifecyclePublisher
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


def test_delivery_and_lifecycle_clients_come_from_the_same_session():
    loader = aws.session().get_component("data_loader")

    delivery = Delivery("us-east-1")._make_client(
        "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
    )
    events = LifecyclePublisher("bus", "us-east-1")._make_client()

    # one loader: each service's model is read once per process
    assert delivery._loader is loader and events._loader is loader
    assert delivery.meta.region_name == "eu-west-1"


def test_binding_again_does_not_wrap_pynamodb_again(test_app):
    import pynamodb.connection.base as base

    bind_models("c", "r", "s", "us-east-1")
    wrapped = base.Connection.client.fget
    bind_models("c2", "r2", "s2", "us-east-1")

    assert base.Connection.client.fget is wrapped
