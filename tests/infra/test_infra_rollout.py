"""Gradual rollout: the deployment configuration each stack gets, the rollback alarms,
the AppSpec, and the dynamic provider's CodeDeploy calls against botocore's Stubber
answering as the API reference says (GetAlias, CreateDeployment, GetDeployment with
`deploymentInfo.status` Created / Queued / InProgress / Baking / Ready / Succeeded /
Failed / Stopped, codedeploy/latest/APIReference/API_DeploymentInfo.html). Not moto: its
CodeDeploy (5.2) leaves every deployment `Created` and never moves an alias, so it could
show neither a success nor a rollback; Stubber also checks each call's parameters and
each response against botocore's service model."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import dill
import pulumi.dynamic.dynamic
import pytest
from botocore.stub import Stubber

from components import rollout
from components.alias_deployment import AliasDeploymentProvider, RolloutFailed, deploy
from components.plan import Plan
from components.rollout import LIVE_ALIAS, Rollout
from components.settings import ConfigError
from streamer import catalog

from .conftest import run_stack
from .graph import PROJECT, alias, function

pytestmark = pytest.mark.infra

GROUP = "aws:codedeploy/deploymentGroup:DeploymentGroup"
SHIFT = "pulumi-python:dynamic/streamer:AliasDeployment"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:streamer-prod-router"
PROPS = {
    "region": "us-east-1",
    "applicationName": "streamer-prod-functions",
    "deploymentGroupName": "router",
    "functionName": "streamer-prod-router",
    "aliasName": LIVE_ALIAS,
    "targetVersion": "8",
}


def groups(plan: Plan, region: str) -> dict[str, Any]:
    return {g.inputs["deploymentGroupName"]: g for g in plan.of_type(GROUP) if g.region == region}


def test_dev_shifts_all_at_once_with_pulumi_alone(dev: Plan) -> None:
    # GIVEN dev (no streamer:rollout)  WHEN its resources are read
    # THEN no CodeDeploy resource exists, and Pulumi keeps each alias on the newest version
    assert not [r for r in dev.resources if r.type.startswith("aws:codedeploy") or r.type == SHIFT]
    assert all(a.ignore_changes == [] for a in dev.of_type("aws:lambda/alias:Alias"))


@pytest.mark.parametrize(
    ("stack", "config"),
    [
        ("prod", "CodeDeployDefault.LambdaCanary10Percent5Minutes"),
        ("staging", "CodeDeployDefault.LambdaLinear10PercentEvery1Minute"),
    ],
)
def test_each_function_of_each_region_gets_a_group_with_the_stacks_configuration(
    request: pytest.FixtureRequest, stack: str, config: str
) -> None:
    # GIVEN prod (canary) or staging (linear, a minute apart)
    plan: Plan = request.getfixturevalue(stack)

    for region in ("us-east-1", "eu-west-1"):
        # WHEN the region's deployment groups are read
        found = groups(plan, region)
        (application,) = [
            r for r in plan.of_type("aws:codedeploy/application:Application") if r.region == region
        ]

        # THEN every function has one, in a Lambda application, with CodeDeploy's predefined
        # configuration of that shape, rolling back on failure and on alarm
        assert set(found) == set(catalog.FUNCTIONS)
        assert application.inputs["computePlatform"] == "Lambda"
        for group in found.values():
            assert group.inputs["appName"] == application.outputs["name"]
            assert group.inputs["deploymentConfigName"] == config
            assert group.inputs["deploymentStyle"] == {
                "deploymentOption": "WITH_TRAFFIC_CONTROL",
                "deploymentType": "BLUE_GREEN",
            }
            assert group.inputs["autoRollbackConfiguration"] == {
                "enabled": True,
                "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"],
            }


def test_the_rollback_alarms_are_the_regions_operations_alarms(prod: Plan) -> None:
    # GIVEN prod's alarms and deployment groups
    for region in ("us-east-1", "eu-west-1"):
        alarms = {a.inputs.get("name") for a in prod.of_type(ALARM) if a.region == region}

        # WHEN each group's alarms are read
        for name, group in groups(prod, region).items():
            named = group.inputs["alarmConfiguration"]

            # THEN they exist in the region and are the function's error rate (the
            # authorizer's crashes), async p99 and the processor's dead letters
            own = "crashes" if name == "authorizer" else "error-rate"
            assert named["enabled"] is True
            assert named["alarms"] == [
                f"streamer-prod-{name}-{own}",
                "streamer-prod-async-p99",
                "streamer-prod-dead-letters",
            ]
            assert set(named["alarms"]) <= alarms


def test_codedeploy_owns_the_alias_version_and_each_update_shifts_it(prod: Plan) -> None:
    for region in ("us-east-1", "eu-west-1"):
        shifts = {
            r.inputs["deploymentGroupName"]: r
            for r in prod.of_type(SHIFT)
            if r.name.startswith(f"{PROJECT}-{region}-")
        }
        # GIVEN each function of the region, its alias and its shift
        for name in catalog.FUNCTIONS:
            live, published = alias(prod, region, name), function(prod, region, name)
            shift = shifts[name]
            # THEN Pulumi leaves the alias's version to CodeDeploy after creating it, and
            # the shift targets the version the update published, on this alias, in region
            assert live.ignore_changes == ["functionVersion"]
            assert shift.inputs["targetVersion"] == published.outputs["version"]
            assert shift.inputs["functionName"] == published.outputs["name"]
            assert shift.inputs["aliasName"] == LIVE_ALIAS
            assert shift.inputs["region"] == region
            assert live.name in shift.depends_on


def test_a_shape_codedeploy_does_not_predefine_gets_a_custom_configuration(
    artifacts_dir: Path,
) -> None:
    # GIVEN dev with a canary of 20 % for 3 minutes
    plan = run_stack(
        "dev",
        artifacts_dir,
        overrides={"rollout": "canary", "rolloutPercent": 20, "rolloutIntervalMinutes": 3},
    )

    # WHEN the configuration and the groups are read
    (config,) = plan.of_type("aws:codedeploy/deploymentConfig:DeploymentConfig")

    # THEN a custom TimeBasedCanary configuration is made, and every group uses it
    assert config.inputs["computePlatform"] == "Lambda"
    assert config.inputs["trafficRoutingConfig"] == {
        "type": "TimeBasedCanary",
        "timeBasedCanary": {"interval": 3, "percentage": 20},
    }
    assert {g.inputs["deploymentConfigName"] for g in groups(plan, "us-east-1").values()} == {
        config.inputs["deploymentConfigName"]
    }


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"rollout": "blue-green"}, "streamer:rollout"),
        ({"rollout": "canary", "rolloutPercent": 0}, "streamer:rolloutPercent"),
        ({"rollout": "linear", "rolloutPercent": 100}, "streamer:rolloutPercent"),
        ({"rollout": "linear", "rolloutIntervalMinutes": 0}, "streamer:rolloutIntervalMinutes"),
    ],
)
def test_rollouts_codedeploy_cannot_run_are_refused(
    artifacts_dir: Path, overrides: dict, key: str
) -> None:
    with pytest.raises(ConfigError, match=key):
        run_stack("dev", artifacts_dir, overrides=overrides)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (Rollout("canary", 10, 30), "CodeDeployDefault.LambdaCanary10Percent30Minutes"),
        (Rollout("linear", 10, 10), "CodeDeployDefault.LambdaLinear10PercentEvery10Minutes"),
        (Rollout("linear", 25, 1), None),
    ],
)
def test_the_predefined_configuration_is_used_when_the_shape_has_one(
    given: Rollout, expected: str | None
) -> None:
    assert given.predefined_config == expected


def test_a_custom_linear_routing_is_in_the_apis_shape() -> None:
    assert Rollout("linear", 25, 2).traffic_routing() == {
        "type": "TimeBasedLinear",
        "timeBasedLinear": {"linearPercentage": 25, "linearInterval": 2},
    }


def test_the_appspec_names_the_alias_the_current_and_the_target_version() -> None:
    # GIVEN a shift of router:live from 7 to 8  WHEN its AppSpec and revision are built
    spec = rollout.app_spec("streamer-prod-router", LIVE_ALIAS, "7", "8")
    revision = rollout.revision(spec)

    # THEN it is the Lambda AppSpec (version 0.0, one AWS::Lambda::Function) carried
    # inline with the content's SHA-256
    assert spec == {
        "version": 0.0,
        "Resources": [
            {
                "streamer-prod-router": {
                    "Type": "AWS::Lambda::Function",
                    "Properties": {
                        "Name": "streamer-prod-router",
                        "Alias": "live",
                        "CurrentVersion": "7",
                        "TargetVersion": "8",
                    },
                }
            }
        ],
    }
    content = revision["appSpecContent"]["content"]
    assert revision["revisionType"] == "AppSpecContent"
    assert json.loads(content) == spec
    assert revision["appSpecContent"]["sha256"] == hashlib.sha256(content.encode()).hexdigest()


def test_no_appspec_for_a_shift_to_the_same_version() -> None:
    with pytest.raises(ValueError, match="already on version 8"):
        rollout.app_spec("f", LIVE_ALIAS, "8", "8")


@pytest.mark.parametrize("status", ["Failed", "Stopped"])
def test_an_ended_bad_deployment_is_reported_with_its_reason_and_the_version_kept(
    status: str,
) -> None:
    info = {
        "deploymentId": "d-ABC123",
        "status": status,
        "errorInformation": {
            "code": "ALARM_ACTIVE",
            "message": "alarm streamer-prod-router-error-rate",
        },
    }
    message = rollout.failure("streamer-prod-router", LIVE_ALIAS, "7", info)
    assert message is not None
    assert "d-ABC123" in message and status.lower() in message
    assert "streamer-prod-router-error-rate" in message
    assert "live alias stays on version 7" in message


def test_a_succeeded_deployment_is_no_failure_and_a_running_one_is_no_outcome() -> None:
    assert rollout.failure("f", LIVE_ALIAS, "7", {"status": "Succeeded"}) is None
    with pytest.raises(ValueError, match="has not ended"):
        rollout.failure("f", LIVE_ALIAS, "7", {"status": "Baking", "deploymentId": "d-1"})


class Clients:
    """A Lambda and a CodeDeploy client whose calls botocore's Stubber answers."""

    def __init__(self) -> None:
        kwargs = dict(
            region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        self.lambda_ = boto3.client("lambda", **kwargs)
        self.codedeploy = boto3.client("codedeploy", **kwargs)
        self.lambda_stub = Stubber(self.lambda_)
        self.codedeploy_stub = Stubber(self.codedeploy)
        self.slept: list[float] = []

    def alias_on(self, version: str) -> None:
        self.lambda_stub.add_response(
            "get_alias",
            {
                "AliasArn": f"{FUNCTION_ARN}:{LIVE_ALIAS}",
                "Name": LIVE_ALIAS,
                "FunctionVersion": version,
            },
            {"FunctionName": PROPS["functionName"], "Name": LIVE_ALIAS},
        )

    def created(self, current: str) -> None:
        spec = rollout.app_spec(PROPS["functionName"], LIVE_ALIAS, current, PROPS["targetVersion"])
        self.codedeploy_stub.add_response(
            "create_deployment",
            {"deploymentId": "d-ABC123"},
            {
                "applicationName": PROPS["applicationName"],
                "deploymentGroupName": PROPS["deploymentGroupName"],
                "revision": rollout.revision(spec),
                "description": f"pulumi up: streamer-prod-router:live from version {current} to 8",
            },
        )

    def status(self, status: str, **more: Any) -> None:
        self.codedeploy_stub.add_response(
            "get_deployment",
            {
                "deploymentInfo": {
                    "deploymentId": "d-ABC123",
                    "applicationName": PROPS["applicationName"],
                    "deploymentGroupName": PROPS["deploymentGroupName"],
                    "status": status,
                    "computePlatform": "Lambda",
                    **more,
                }
            },
            {"deploymentId": "d-ABC123"},
        )

    def deploy(self, **kwargs: Any) -> dict[str, Any]:
        with self.lambda_stub, self.codedeploy_stub:
            outputs = deploy(
                PROPS, self.lambda_, self.codedeploy, sleep=self.slept.append, **kwargs
            )
            self.lambda_stub.assert_no_pending_responses()
            self.codedeploy_stub.assert_no_pending_responses()
        return outputs


def test_an_alias_already_on_the_target_starts_no_deployment() -> None:
    # GIVEN the alias Pulumi just created on the published version (the first deploy)
    clients = Clients()
    clients.alias_on("8")

    # WHEN the shift runs  THEN CodeDeploy is not called (Stubber refuses unexpected calls)
    outputs = clients.deploy()
    assert outputs["deploymentId"] == "" and outputs["previousVersion"] == "8"


def test_a_deployment_is_started_and_waited_for_until_it_succeeds() -> None:
    # GIVEN the alias on 7 and a deployment that runs, bakes, then succeeds
    clients = Clients()
    clients.alias_on("7")
    clients.created("7")
    for status in ("Created", "InProgress", "Baking", "Succeeded"):
        clients.status(status)

    # WHEN the shift runs
    outputs = clients.deploy(poll_s=15)

    # THEN it started the deployment from 7 to 8 and returned once it succeeded
    assert outputs["deploymentId"] == "d-ABC123" and outputs["previousVersion"] == "7"
    assert clients.slept == [15, 15, 15]


def test_a_rolled_back_deployment_fails_the_update_saying_traffic_stayed() -> None:
    # GIVEN a deployment CodeDeploy stops because an alarm fired (and rolls back)
    clients = Clients()
    clients.alias_on("7")
    clients.created("7")
    clients.status("InProgress")
    clients.status(
        "Stopped",
        errorInformation={
            "code": "ALARM_ACTIVE",
            "message": "One or more alarms have been activated: streamer-prod-router-error-rate",
        },
        rollbackInfo={"rollbackDeploymentId": "d-ROLLBACK", "rollbackMessage": "Rolled back"},
    )

    # WHEN the shift runs  THEN `pulumi up` fails, naming the alarm and the version kept
    with pytest.raises(RolloutFailed, match="live alias stays on version 7") as failed:
        clients.deploy()
    assert "streamer-prod-router-error-rate" in str(failed.value)


def test_a_deployment_that_does_not_end_in_time_fails_the_update() -> None:
    clients = Clients()
    clients.alias_on("7")
    clients.created("7")
    for _ in range(3):
        clients.status("InProgress")
    with pytest.raises(RolloutFailed, match="still InProgress"):
        clients.deploy(poll_s=10, wait_limit_s=20)


def test_the_provider_survives_pulumis_serialization() -> None:
    # GIVEN the provider as Pulumi serializes it for its dynamic provider process
    text = pulumi.dynamic.dynamic.serialize_provider(AliasDeploymentProvider())

    # WHEN it is read back  THEN it is the same provider
    assert isinstance(dill.loads(base64.b64decode(text)), AliasDeploymentProvider)
