"""The sweeper's paged Query of the due index runs under the same budget as its other calls.

`store.due_items` makes its own botocore client (PynamoDB's iterator gives no
key for an item it cannot parse); without a config that client would wait on
botocore's defaults (60 s connect and read, legacy retries) whatever the function's budget.
"""

from __future__ import annotations

from typing import Any

import pytest

from streamer import aws, runtime, store
from streamer.store import requests as request_store


@pytest.fixture
def made_clients(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every client `store.due_items` makes, as made (DynamoDB is moto's)."""
    made: list[Any] = []
    create = request_store.aws.create_client

    def create_client(service_name: str, **kwargs: Any) -> Any:
        made.append(create(service_name, **kwargs))
        return made[-1]

    monkeypatch.setattr(request_store.aws, "create_client", create_client)
    runtime.current()
    return made


def assert_has_budget(client: Any, budget: aws.CallBudget) -> None:
    assert client.meta.config.connect_timeout == budget.connect_timeout_s
    assert client.meta.config.read_timeout == budget.read_timeout_s
    assert client.meta.config.retries == {
        "mode": budget.retry_mode,
        "total_max_attempts": budget.max_attempts,
    }


def test_the_sweepers_due_query_has_its_functions_budget(made_clients):
    # WHEN the sweeper reads the due index (its calls are under no router budget)
    assert store.due_items("us-east-1", 10) == []

    # THEN its client has the patient budget the sweeper's PynamoDB calls have
    (client,) = made_clients
    assert_has_budget(client, aws.current_budget())
    assert_has_budget(client, aws.PATIENT)


def test_the_due_query_follows_the_budget_it_runs_under(made_clients):
    with aws.dynamodb_budget(aws.ROUTER):
        store.due_items("us-east-1", 10)

    (client,) = made_clients
    assert_has_budget(client, aws.ROUTER)
