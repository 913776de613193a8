"""The AWS call budgets read from the environment; clients sharing one session (no calls)."""

from __future__ import annotations

import pytest

from streamer import aws
from streamer.delivery import Delivery
from streamer.lifecycle import LifecyclePublisher


def test_delivery_and_lifecycle_clients_come_from_the_same_session(aws_env):
    loader = aws.session().get_component("data_loader")

    delivery = Delivery("us-east-1")._make_client(
        "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
    )
    events = LifecyclePublisher("bus", "us-east-1")._make_client()

    # one loader: each service's model is read once per process
    assert delivery._loader is loader and events._loader is loader
    assert delivery.meta.region_name == "eu-west-1"


def test_the_environment_changes_a_budget_and_names_a_malformed_value():
    env = {aws.READ_TIMEOUT_S: "0.5", aws.MAX_ATTEMPTS: "3"}

    assert aws.budget_from_env(aws.ROUTER, env) == aws.CallBudget(
        connect_timeout_s=aws.ROUTER.connect_timeout_s, read_timeout_s=0.5, max_attempts=3
    )
    assert aws.budget_from_env(aws.PATIENT, {}) == aws.PATIENT
    for name, value in ((aws.CONNECT_TIMEOUT_S, "soon"), (aws.MAX_ATTEMPTS, "0")):
        with pytest.raises(ValueError, match=f"{name}.*{value!r}"):
            aws.budget_from_env(aws.ROUTER, {name: value})
