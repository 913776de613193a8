"""Account bootstrap: API Gateway's CloudWatch Logs role lives in its own project, and the
environment stacks only check that it is there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components import plan
from components.api import BOOTSTRAP_REGION_OUTPUT, BOOTSTRAP_ROLE_OUTPUT, BootstrapMissing
from components.plan import Plan, PlanMocks

from .conftest import run_stack

pytestmark = pytest.mark.infra

BOOTSTRAP = plan.PROJECT_ROOT / "bootstrap"
ACCOUNT_LEVEL = {"aws:apigateway/account:Account"}
PUSH_TO_CLOUDWATCH = "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"


def trusted_services(role_inputs: dict) -> set[str]:
    document = json.loads(role_inputs["assumeRolePolicy"])
    return {s["Principal"]["Service"] for s in document["Statement"]}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_no_environment_stack_creates_an_account_level_resource(
    artifacts_dir: Path, stack: str
) -> None:
    # GIVEN an environment stack planned on a bootstrapped account
    planned = run_stack(stack, artifacts_dir)

    # WHEN its resources are read
    types = {r.type for r in planned.resources}
    apigateway_roles = [
        r
        for r in planned.of_type("aws:iam/role:Role")
        if "apigateway.amazonaws.com" in trusted_services(r.inputs)
    ]

    # THEN it neither sets API Gateway's account settings nor makes a role for them,
    # so destroying it cannot take them from the other stacks
    assert not types & ACCOUNT_LEVEL
    assert apigateway_roles == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_logging_stacks_check_the_bootstrap_of_each_region(
    request: pytest.FixtureRequest, stack: str
) -> None:
    # GIVEN an environment stack with API Gateway logging on (every stack file's default)
    planned: Plan = request.getfixturevalue(stack)

    # WHEN its stack references are read
    references = planned.of_type("pulumi:pulumi:StackReference")
    regions = [p.inputs["region"] for p in planned.of_type("pulumi:providers:aws")]

    # THEN it reads one bootstrap stack per region, named by the organization and region,
    # and every stage writes access logs
    assert sorted(r.inputs["name"] for r in references) == sorted(
        f"organization/streamer-bootstrap/{region}" for region in regions
    )
    for region in regions:
        stage = planned.named(f"streamer-{region}-websocket-stage")
        assert stage.inputs["accessLogSettings"]["destinationArn"].startswith("arn:aws:logs:")


def test_a_logging_stack_on_a_bare_account_stops_at_preview_naming_the_fix(
    artifacts_dir: Path,
) -> None:
    # GIVEN an account and region nobody bootstrapped
    bare = PlanMocks(stack_outputs=plan.bare_account)

    # WHEN dev (logging on) is previewed
    # THEN it stops before creating anything, naming the missing stack, the region,
    # what to run, and how to do without
    with pytest.raises(BootstrapMissing) as raised:
        plan.run("dev", artifacts_dir=artifacts_dir, preview=True, plan_mocks=bare)
    message = str(raised.value)
    assert "organization/streamer-bootstrap/us-east-1" in message
    assert "us-east-1" in message
    assert "bootstrap/" in message
    assert "streamer:apiGatewayLogging false" in message


def test_a_bootstrap_of_another_region_is_refused(artifacts_dir: Path) -> None:
    # GIVEN a bootstrap stack name that points at another region's bootstrap
    overrides = {"bootstrapStack": "organization/streamer-bootstrap/eu-west-1"}

    # WHEN dev (us-east-1) is previewed  THEN it says which region the stack covers
    with pytest.raises(BootstrapMissing, match=r"eu-west-1, not us-east-1"):
        plan.run("dev", artifacts_dir=artifacts_dir, preview=True, overrides=overrides)


def test_a_stack_without_api_gateway_logging_deploys_on_a_bare_account(
    artifacts_dir: Path,
) -> None:
    # GIVEN a bare account and dev configured without API Gateway logging
    bare = PlanMocks(stack_outputs=plan.bare_account)

    # WHEN it is deployed
    planned = plan.run(
        "dev",
        artifacts_dir=artifacts_dir,
        preview=False,
        overrides={"apiGatewayLogging": False},
        plan_mocks=bare,
    )

    # THEN it reads no bootstrap and its stage writes no access logs (which would need
    # the account's role); everything else is there
    assert planned.of_type("pulumi:pulumi:StackReference") == []
    stage = planned.named("streamer-us-east-1-websocket-stage")
    assert "accessLogSettings" not in stage.inputs
    assert not [r for r in planned.resources if r.name.endswith("-websocket-access-logs")]
    assert planned.of_type("aws:lambda/function:Function")


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_the_bootstrap_sets_the_account_role_and_nothing_else(region: str) -> None:
    # GIVEN the bootstrap project's stack for one region
    planned = plan.run(region, root=BOOTSTRAP, preview=False)

    # WHEN its resources and outputs are read
    by_type = {r.type: r for r in planned.resources}
    role = by_type["aws:iam/role:Role"]
    attachment = by_type["aws:iam/rolePolicyAttachment:RolePolicyAttachment"]
    account = by_type["aws:apigateway/account:Account"]

    # THEN it makes API Gateway's CloudWatch role, with AWS's policy for it, and sets it as
    # the account's, in that region; and exports what the environment stacks check
    assert sorted(r.type for r in planned.resources) == sorted(
        ["aws:iam/role:Role", "aws:iam/rolePolicyAttachment:RolePolicyAttachment", *ACCOUNT_LEVEL]
    )
    assert trusted_services(role.inputs) == {"apigateway.amazonaws.com"}
    assert attachment.inputs["role"] == role.outputs["name"]
    assert attachment.inputs["policyArn"] == PUSH_TO_CLOUDWATCH
    assert account.inputs["cloudwatchRoleArn"] == role.outputs["arn"]
    assert role.name in attachment.depends_on
    assert attachment.name in account.depends_on
    assert {r.region for r in planned.resources} == {region}
    assert planned.outputs == {
        BOOTSTRAP_ROLE_OUTPUT: role.outputs["arn"],
        BOOTSTRAP_REGION_OUTPUT: region,
    }


def test_the_mock_account_reports_what_the_bootstrap_exports() -> None:
    # GIVEN the bootstrap's outputs and what the plan's bootstrapped account reports
    exported = plan.run("us-east-1", root=BOOTSTRAP, preview=False).outputs

    # WHEN both are compared  THEN environment plans check against the real contract
    reported = plan.bootstrapped_account("organization/streamer-bootstrap/us-east-1")
    assert reported == exported


def test_the_bootstrap_plan_command_shows_the_account_setting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the plan command pointed at the bootstrap project
    assert plan.main(["--project", "bootstrap", "--stack", "us-east-1"]) == 0

    # WHEN its output is read  THEN it lists the account setting in that region
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "stack us-east-1 of streamer-bootstrap: 3 resources"
    assert any(
        line.startswith("aws:apigateway/account:Account") and "[us-east-1]" in line
        for line in text.splitlines()
    )
