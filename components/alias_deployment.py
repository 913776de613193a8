"""Start CodeDeploy's traffic shift of a function's `live` alias from `pulumi up`, and wait.

CloudFormation has the `CodeDeployLambdaAliasUpdate` update policy; Pulumi has nothing
like it, so this dynamic resource plays its part (docs/deploying.md, "Gradual rollout",
says why this way). Its input is the version just published; when that differs from
the version the alias is on, it calls CreateDeployment with an AppSpec naming the alias,
the current and the target version, polls GetDeployment until the deployment ends, and
fails the update with `rollout.failure`'s message when it ended Failed or Stopped (the
alias is then back on the current version: the group rolls back automatically). A failed
update leaves its old inputs in Pulumi's state, so the next `pulumi up` tries again.

The boto3 calls run in Pulumi's dynamic provider process with the deployer's credentials:
lambda:GetAlias, codedeploy:CreateDeployment, codedeploy:GetDeployment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pulumi.dynamic

from components import rollout

#: GetDeployment is polled this often; a canary's shortest step is a minute.
POLL_S = 15.0
#: Past this, the update gives up waiting (the deployment goes on; the message says so).
WAIT_LIMIT_S = 3 * 3600.0


class RolloutFailed(RuntimeError):
    """The deployment ended Failed or Stopped: traffic stayed on the previous version."""


def deploy(
    props: Mapping[str, Any],
    lambda_client: Any,
    codedeploy_client: Any,
    *,
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = POLL_S,
    wait_limit_s: float = WAIT_LIMIT_S,
) -> dict[str, Any]:
    """Shift `props`' alias to `props["targetVersion"]` through CodeDeploy and wait.

    Returns the resource's outputs: its inputs, the version the alias was on before and
    the deployment's id (empty when the alias was already on the target, as on the first
    deploy, where Pulumi created the alias on the new version itself).
    """
    function, alias = props["functionName"], props["aliasName"]
    target = str(props["targetVersion"])
    current = lambda_client.get_alias(FunctionName=function, Name=alias)["FunctionVersion"]
    outputs = {**props, "previousVersion": current, "deploymentId": ""}
    if current == target:
        return outputs
    spec = rollout.app_spec(function, alias, current, target)
    started = codedeploy_client.create_deployment(
        applicationName=props["applicationName"],
        deploymentGroupName=props["deploymentGroupName"],
        revision=rollout.revision(spec),
        description=f"pulumi up: {function}:{alias} from version {current} to {target}",
    )
    deployment_id = started["deploymentId"]
    waited = 0.0
    while True:
        info = codedeploy_client.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        if info["status"] not in rollout.STILL_RUNNING:
            break
        if waited >= wait_limit_s:
            raise RolloutFailed(
                f"{function}: CodeDeploy deployment {deployment_id} still {info['status']} "
                f"after {wait_limit_s:.0f} s; follow it in the CodeDeploy console and run "
                "`pulumi up` again once it has ended"
            )
        sleep(poll_s)
        waited += poll_s
    message = rollout.failure(function, alias, current, info)
    if message is not None:
        raise RolloutFailed(message)
    return {**outputs, "deploymentId": deployment_id}


def _clients(region: str) -> tuple[Any, Any]:
    import boto3  # the provider process's, imported where the calls are made

    return boto3.client("lambda", region_name=region), boto3.client(
        "codedeploy", region_name=region
    )


class AliasDeploymentProvider(pulumi.dynamic.ResourceProvider):
    """Create and update start a deployment; delete does nothing (the alias is Pulumi's)."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outputs = deploy(props, *_clients(props["region"]))
        return pulumi.dynamic.CreateResult(
            id_=f"{props['functionName']}:{props['aliasName']}", outs=outputs
        )

    def update(
        self, _id: str, _olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=deploy(news, *_clients(news["region"])))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class AliasDeployment(pulumi.dynamic.Resource, module="streamer", name="AliasDeployment"):
    """The CodeDeploy deployment that brings one function's alias to its newest version."""

    def __init__(
        self,
        name: str,
        *,
        region: str,
        application_name: pulumi.Input[str],
        deployment_group_name: pulumi.Input[str],
        function_name: pulumi.Input[str],
        alias_name: pulumi.Input[str],
        target_version: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            AliasDeploymentProvider(),
            name,
            {
                "region": region,
                "applicationName": application_name,
                "deploymentGroupName": deployment_group_name,
                "functionName": function_name,
                "aliasName": alias_name,
                "targetVersion": target_version,
                "previousVersion": None,
                "deploymentId": None,
            },
            opts,
        )
