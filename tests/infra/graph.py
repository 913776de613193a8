"""Reading a mock run's resources: by region, by function, and the policies of a role."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from components.plan import Plan, PlannedResource

PROJECT = "streamer"


def regional_resources(plan: Plan, region: str) -> list[PlannedResource]:
    """Everything created for `region`: its provider, regional stack and posting rights."""
    roots = [f"{PROJECT}-{region}", f"{PROJECT}-{region}-connections-access"]
    found = [plan.named(f"aws-{region}")]
    for root in roots:
        found += [plan.named(root), *plan.descendants(root)]
    return found


def type_counts(resources: list[PlannedResource]) -> Counter[str]:
    return Counter(r.type for r in resources)


def function(plan: Plan, region: str, name: str) -> PlannedResource:
    return plan.named(f"{PROJECT}-{region}-{name}-function")


def alias(plan: Plan, region: str, name: str) -> PlannedResource:
    """The `live` alias of function `name`: what every trigger invokes."""
    return plan.named(f"{PROJECT}-{region}-{name}-live")


def functions(plan: Plan, region: str) -> dict[str, PlannedResource]:
    """Every function of `region` (the components' included), by its short name (`router`)."""
    return {
        fn.name.removeprefix(f"{PROJECT}-{region}-").removesuffix("-function"): fn
        for fn in plan.of_type("aws:lambda/function:Function")
        if fn.region == region
    }


def environment(plan: Plan, region: str, name: str) -> dict[str, Any]:
    return function(plan, region, name).inputs["environment"]["variables"]


def grants(plan: Plan, region: str, name: str) -> set[tuple[str, str]]:
    """Every (action, resource) pair that any policy of the function's role allows."""
    role = plan.named(f"{PROJECT}-{region}-{name}-role")
    pairs: set[tuple[str, str]] = set()
    for policy in plan.of_type("aws:iam/rolePolicy:RolePolicy"):
        if policy.inputs["role"] != role.outputs["name"]:
            continue
        for statement in json.loads(policy.inputs["policy"])["Statement"]:
            assert statement["Effect"] == "Allow"
            pairs |= {(a, r) for a in statement["Action"] for r in statement["Resource"]}
    return pairs


def table_arns(plan: Plan, region: str) -> dict[str, str]:
    """Logical table name to that region's table ARN (the home table or its replica)."""
    arns = {}
    for logical in ("connections", "requests", "subscriptions"):
        table = plan.named(f"{PROJECT}-tables-{logical}")
        if table.region == region:
            arns[logical] = table.outputs["arn"]
        else:
            (replica,) = [r for r in table.outputs["replicas"] if r["regionName"] == region]
            arns[logical] = replica["arn"]
    return arns


def requests_stream_arn(plan: Plan, region: str) -> str:
    table = plan.named(f"{PROJECT}-tables-requests")
    if table.region == region:
        return table.outputs["streamArn"]
    (replica,) = [r for r in table.outputs["replicas"] if r["regionName"] == region]
    return replica["streamArn"]


def connections_arn(plan: Plan, region: str) -> str:
    api = plan.named(f"{PROJECT}-{region}-websocket-api")
    stage = plan.named(f"{PROJECT}-{region}-websocket-stage")
    return f"{api.outputs['executionArn']}/{stage.inputs['name']}/POST/@connections/*"
