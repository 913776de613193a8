"""Each function's DynamoDB call budget, declared once in the catalog.

A function API Gateway waits on must give up on the store before API Gateway
gives up on it (29 s, `catalog.API_INTEGRATION_LIMIT_S`), so it can still answer.
"""

from __future__ import annotations

import importlib

import pytest

from streamer import aws, budgets, entry
from streamer.catalog import API_INTEGRATION_LIMIT_S, FUNCTIONS, Trigger

#: What API Gateway waits on while a client waits: the handshake, a message, an HTTP call.
WAITED_ON = {
    Trigger.WEBSOCKET_AUTHORIZER,
    Trigger.WEBSOCKET_CONNECT,
    Trigger.WEBSOCKET_DEFAULT,
    Trigger.HTTP_API,
}


def longest_call_s(budget: aws.CallBudget) -> float:
    """Every attempt waiting out both timeouts, plus botocore's standard backoff (at most 20 s
    in all, capped per retry; https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html)."""
    retries = budget.max_attempts - 1
    backoff_s = sum(min(2**attempt, 20) for attempt in range(retries))
    return budget.max_attempts * (budget.connect_timeout_s + budget.read_timeout_s) + backoff_s


@pytest.mark.parametrize(
    "name", [f.name for f in FUNCTIONS.values() if WAITED_ON & set(f.triggers)]
)
def test_a_function_api_gateway_waits_on_gives_up_on_the_store_in_time_to_answer(name):
    budget = FUNCTIONS[name].store_budget
    assert longest_call_s(budget) < API_INTEGRATION_LIMIT_S, (name, budget)


def test_connect_uses_the_routers_budget_and_disconnect_stays_patient():
    assert budgets.budget_of(entry.CONNECT) == aws.ROUTER
    assert budgets.budget_of(entry.ROUTER) == aws.ROUTER
    assert budgets.budget_of(entry.DISCONNECT) == aws.PATIENT


def test_a_functions_environment_changes_its_declared_budget(monkeypatch):
    monkeypatch.setenv(aws.READ_TIMEOUT_S, "0.5")

    assert budgets.budget_of(entry.CONNECT) == aws.CallBudget(
        connect_timeout_s=aws.ROUTER.connect_timeout_s,
        read_timeout_s=0.5,
        max_attempts=aws.ROUTER.max_attempts,
    )


def test_an_entry_point_runs_its_calls_under_its_functions_budget():
    seen = []

    @budgets.runs_under_its_budget(entry.CONNECT)
    def handler(event: dict, context: object) -> dict:
        seen.append(aws.current_budget())
        return {"statusCode": 200}

    assert handler({}, None) == {"statusCode": 200}
    assert seen == [aws.ROUTER]
    assert aws.current_budget() == aws.configured_budget(aws.PATIENT)


def test_the_http_function_runs_the_router_so_its_budget_is_the_routers():
    # The HTTP API answers through the router (`current_router`), under the router's budget.
    assert FUNCTIONS["http"].store_budget == FUNCTIONS["router"].store_budget


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_a_function_whose_entry_point_sets_no_budget_is_declared_patient(name):
    # Calls outside any budget get `aws.PATIENT`: the catalog must say so for such a function.
    function = FUNCTIONS[name]
    module_name, _, attribute = function.handler.rpartition(".")
    entry_point = getattr(importlib.import_module(module_name), attribute)
    sets_a_budget = hasattr(entry_point, "__wrapped__") or name in ("router", "http")
    if not sets_a_budget:
        assert function.store_budget == aws.PATIENT, name
