"""Every invoke path targets a function's `live` alias, never the unqualified function
($LATEST): API Gateway integrations and authorizers, invoke permissions, the stream
mapping, EventBridge targets, SNS subscriptions and the asynchronous invoke settings."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components.plan import Plan
from components.rollout import LIVE_ALIAS

pytestmark = pytest.mark.infra

#: A Lambda function ARN, with its qualifier (version or alias) when it has one.
FUNCTION_ARN = re.compile(
    r"arn:aws:lambda:[a-z0-9-]+:\d{12}:function:([A-Za-z0-9_-]+)(:[^/\s\"]+)?"
)
FUNCTION = "aws:lambda/function:Function"
ALIAS = "aws:lambda/alias:Alias"
STACKS = ("dev", "prod")


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def function_arns(plan: Plan) -> list[tuple[str, str, str | None]]:
    """(resource, function, qualifier) for every function ARN any resource is given."""
    found = []
    for resource in plan.resources:
        if resource.type in (FUNCTION, ALIAS):
            continue
        for text in strings(resource.inputs):
            for match in FUNCTION_ARN.finditer(text):
                qualifier = match.group(2)
                found.append((resource.name, match.group(1), qualifier and qualifier[1:]))
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_every_function_has_a_live_alias_on_its_published_version(
    request: pytest.FixtureRequest, stack: str
) -> None:
    # GIVEN the stack's functions and aliases
    plan: Plan = request.getfixturevalue(stack)
    functions = plan.of_type(FUNCTION)
    aliases = {a.inputs["functionName"]: a for a in plan.of_type(ALIAS)}

    # WHEN each function is matched with its alias
    # THEN every function publishes versions and has exactly one alias, `live`, on the
    # version the function reports
    assert functions and len(aliases) == len(plan.of_type(ALIAS)) == len(functions)
    for function in functions:
        assert function.inputs["publish"] is True, function.name
        alias = aliases[function.outputs["name"]]
        assert alias.inputs["name"] == LIVE_ALIAS
        assert alias.inputs["functionVersion"] == function.outputs["version"] != "$LATEST"


@pytest.mark.parametrize("stack", STACKS)
def test_nothing_is_given_an_unqualified_function_arn(
    request: pytest.FixtureRequest, stack: str
) -> None:
    # GIVEN every function ARN any resource of the stack is given (integrations,
    # authorizers, the mapping, targets, subscriptions)
    plan: Plan = request.getfixturevalue(stack)
    found = function_arns(plan)

    # THEN there are some, and each one names the live alias
    kinds = {plan.named(resource).type for resource, _, _ in found}
    assert {
        "aws:apigatewayv2/integration:Integration",
        "aws:apigatewayv2/authorizer:Authorizer",
        "aws:lambda/eventSourceMapping:EventSourceMapping",
        "aws:cloudwatch/eventTarget:EventTarget",
        "aws:sns/topicSubscription:TopicSubscription",
    } <= kinds
    unqualified = [(r, f, q) for r, f, q in found if q != LIVE_ALIAS]
    assert unqualified == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_invoke_permission_and_invoke_setting_is_the_aliass(
    request: pytest.FixtureRequest, stack: str
) -> None:
    # GIVEN the invoke permissions and asynchronous invoke settings, which name a function
    # by name and a qualifier
    plan: Plan = request.getfixturevalue(stack)
    named = [
        *plan.of_type("aws:lambda/permission:Permission"),
        *plan.of_type("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"),
    ]

    # THEN each one is for the live alias: a permission for the function alone would not
    # let the alias be invoked, and the alias's async retries would be AWS's defaults
    assert named
    assert {r.name: r.inputs.get("qualifier") for r in named} == {r.name: LIVE_ALIAS for r in named}


@pytest.mark.parametrize("stack", STACKS)
def test_each_invoked_function_is_invoked_where_its_alias_is(
    request: pytest.FixtureRequest, stack: str
) -> None:
    # GIVEN the aliases' ARNs  WHEN the ARNs the invokers are given are read
    plan: Plan = request.getfixturevalue(stack)
    alias_arns = {a.outputs["arn"] for a in plan.of_type(ALIAS)}
    invoked = {
        f"{m.group(0)}"
        for r in plan.resources
        if r.type not in (FUNCTION, ALIAS)
        for text in strings(r.inputs)
        for m in FUNCTION_ARN.finditer(text)
    }

    # THEN each is an alias the stack made
    assert invoked <= alias_arns
