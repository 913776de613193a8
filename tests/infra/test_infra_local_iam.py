"""The local stack's roles (`local.iam`) grant what the deployed roles grant, no more, no less."""

from __future__ import annotations

import pytest

from components.plan import ACCOUNT, Plan
from local.iam import role_of
from streamer import catalog, config

from .graph import environment, grants

pytestmark = pytest.mark.infra


def checked_locally(action: str, resource: str) -> bool:
    """The deployed grants `local.iam` checks: table and index calls, lifecycle events
    (the stream is read by the local mapping, not by a function)."""
    if action.startswith("events:"):
        return True
    return action.startswith("dynamodb:") and "/stream/" not in resource and resource != "*"


@pytest.mark.parametrize(("stack", "region"), [("dev", "us-east-1"), ("prod", "eu-west-1")])
@pytest.mark.parametrize("name", sorted(catalog.FUNCTIONS))
def test_local_role_grants_the_deployed_table_and_event_grants(
    request: pytest.FixtureRequest, stack: str, region: str, name: str
) -> None:
    # GIVEN one deployed function, its environment and its role's grants
    plan: Plan = request.getfixturevalue(stack)
    deployed = {pair for pair in grants(plan, region, name) if checked_locally(*pair)}
    # (Lambda sets AWS_REGION itself.)
    settings = config.Settings.from_env({**environment(plan, region, name), config.REGION: region})

    # WHEN the local stack derives its role from the same catalog entry and environment
    role = role_of(catalog.FUNCTIONS[name], f"streamer-{name}", ACCOUNT, settings)

    # THEN it grants exactly the same actions on the same tables, indexes and bus
    assert {(g.action, g.resource) for g in role.grants} == deployed
