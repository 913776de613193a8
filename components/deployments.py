"""Gradual rollout of one region's functions with CodeDeploy (`streamer:rollout` canary or
linear; components/rollout.py decides the shape).

- A service role CodeDeploy assumes, with AWS's managed AWSCodeDeployRoleForLambda
  (codedeploy/latest/userguide/getting-started-create-service-role.html): it reads the
  alarms, invokes hooks and updates the aliases.
- One application (compute platform Lambda) and, per function, a deployment group
  (BLUE_GREEN with traffic control, the only style Lambda takes) naming the function's
  rollback alarms, rolling back automatically on DEPLOYMENT_FAILURE and
  DEPLOYMENT_STOP_ON_ALARM.
- The deployment configuration: CodeDeploy's predefined one when the shape has one,
  else a custom one (TimeBasedCanary / TimeBasedLinear).
- Per function, the `AliasDeployment` that starts and waits for the shift of its `live`
  alias to the version the update published (components/alias_deployment.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import policies
from components.alias_deployment import AliasDeployment
from components.functions import StreamerFunction
from components.rollout import Rollout

COMPUTE_PLATFORM = "Lambda"
SERVICE_ROLE_POLICY = "arn:aws:iam::aws:policy/service-role/AWSCodeDeployRoleForLambda"
#: What rolls a deployment back (API_AutoRollbackConfiguration.html, events).
ROLLBACK_EVENTS = ("DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM")


@dataclass
class DeploymentsArgs:
    """The region, the shape of the rollout, the functions and the alarms that stop it."""

    prefix: str
    region: str
    rollout: Rollout
    functions: Mapping[str, StreamerFunction]
    #: By function: the names of the alarms that roll its deployment back.
    rollback_alarms: Mapping[str, Sequence[str]]
    #: The alarm resources, which must exist before a group names them.
    alarms: Sequence[pulumi.Resource]


class Deployments(pulumi.ComponentResource):
    """The CodeDeploy application, configuration, groups and alias deployments of a region."""

    application_name: pulumi.Output[str]
    deployment_config_name: pulumi.Output[str]
    groups: dict[str, aws.codedeploy.DeploymentGroup]

    def __init__(
        self, name: str, args: DeploymentsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("streamer:components:Deployments", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if not args.rollout.shifted:
            raise ValueError("an all-at-once rollout needs no CodeDeploy deployments")

        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=policies.assume_role_document("codedeploy.amazonaws.com"),
            opts=child,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-role-policy", role=role.name, policy_arn=SERVICE_ROLE_POLICY, opts=child
        )
        application = aws.codedeploy.Application(
            f"{name}-application",
            name=f"{args.prefix}-functions",
            compute_platform=COMPUTE_PLATFORM,
            opts=child,
        )
        config_name: pulumi.Input[str]
        predefined = args.rollout.predefined_config
        if predefined is not None:
            config_name = predefined
        else:
            routing = args.rollout.traffic_routing()
            kind = routing["type"]
            shape = routing["timeBasedCanary" if kind == "TimeBasedCanary" else "timeBasedLinear"]
            prefix = "canary" if kind == "TimeBasedCanary" else "linear"
            steps = aws.codedeploy.DeploymentConfigTrafficRoutingConfigTimeBasedCanaryArgs
            config_name = aws.codedeploy.DeploymentConfig(
                f"{name}-config",
                deployment_config_name=(
                    f"{args.prefix}-{args.rollout.strategy}-{args.rollout.percent}pct-"
                    f"{args.rollout.interval_minutes}min"
                ),
                compute_platform=COMPUTE_PLATFORM,
                traffic_routing_config=aws.codedeploy.DeploymentConfigTrafficRoutingConfigArgs(
                    type=kind,
                    time_based_canary=steps(
                        interval=shape[f"{prefix}Interval"], percentage=shape[f"{prefix}Percentage"]
                    )
                    if kind == "TimeBasedCanary"
                    else None,
                    time_based_linear=aws.codedeploy.DeploymentConfigTrafficRoutingConfigTimeBasedLinearArgs(
                        interval=shape[f"{prefix}Interval"], percentage=shape[f"{prefix}Percentage"]
                    )
                    if kind == "TimeBasedLinear"
                    else None,
                ),
                opts=child,
            ).deployment_config_name

        self.groups = {}
        for function, made in args.functions.items():
            group = aws.codedeploy.DeploymentGroup(
                f"{name}-{function}",
                app_name=application.name,
                deployment_group_name=function,
                service_role_arn=role.arn,
                deployment_config_name=config_name,
                deployment_style=aws.codedeploy.DeploymentGroupDeploymentStyleArgs(
                    deployment_option="WITH_TRAFFIC_CONTROL", deployment_type="BLUE_GREEN"
                ),
                auto_rollback_configuration=aws.codedeploy.DeploymentGroupAutoRollbackConfigurationArgs(
                    enabled=True, events=list(ROLLBACK_EVENTS)
                ),
                alarm_configuration=aws.codedeploy.DeploymentGroupAlarmConfigurationArgs(
                    enabled=True, alarms=list(args.rollback_alarms[function])
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment, *args.alarms]),
            )
            self.groups[function] = group
            AliasDeployment(
                f"{name}-{function}-shift",
                region=args.region,
                application_name=application.name,
                deployment_group_name=group.deployment_group_name,
                function_name=made.alias.function_name,
                alias_name=made.alias.name,
                target_version=made.function.version,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[made.alias]),
            )
        self.application_name = application.name
        self.deployment_config_name = pulumi.Output.from_input(config_name)
        self.register_outputs(
            {"application_name": application.name, "deployment_config": config_name}
        )
