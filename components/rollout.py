"""How a new version of a function reaches its traffic: decisions only, no AWS calls.

Every function is invoked through its `live` alias. With `streamer:rollout` all-at-once,
Pulumi points the alias at each new version itself. With `canary` or `linear`, CodeDeploy
shifts the alias: a deployment group per function (compute platform Lambda) with the
deployment configuration chosen here, started by `components.alias_deployment` with the
AppSpec built here, and rolled back by CodeDeploy when one of the group's alarms fires.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The alias every trigger invokes; never the unqualified function ($LATEST).
LIVE_ALIAS = "live"

ALL_AT_ONCE, CANARY, LINEAR = "all-at-once", "canary", "linear"
STRATEGIES = (ALL_AT_ONCE, CANARY, LINEAR)

#: CodeDeploy's predefined Lambda deployment configurations, by (strategy, percent,
#: minutes) (codedeploy/latest/userguide/deployment-configurations.html, "Deployment
#: configurations on an AWS Lambda compute platform"); other shapes get a custom one.
PREDEFINED: Mapping[tuple[str, int, int], str] = {
    (CANARY, 10, 5): "CodeDeployDefault.LambdaCanary10Percent5Minutes",
    (CANARY, 10, 10): "CodeDeployDefault.LambdaCanary10Percent10Minutes",
    (CANARY, 10, 15): "CodeDeployDefault.LambdaCanary10Percent15Minutes",
    (CANARY, 10, 30): "CodeDeployDefault.LambdaCanary10Percent30Minutes",
    (LINEAR, 10, 1): "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
    (LINEAR, 10, 2): "CodeDeployDefault.LambdaLinear10PercentEvery2Minutes",
    (LINEAR, 10, 3): "CodeDeployDefault.LambdaLinear10PercentEvery3Minutes",
    (LINEAR, 10, 10): "CodeDeployDefault.LambdaLinear10PercentEvery10Minutes",
}
#: TrafficRoutingConfig `type` of a custom configuration, by strategy
#: (codedeploy/latest/APIReference/API_TrafficRoutingConfig.html).
ROUTING_TYPES = {CANARY: "TimeBasedCanary", LINEAR: "TimeBasedLinear"}

#: GetDeployment's `deploymentInfo.status` values (API_DeploymentInfo.html): a Lambda
#: deployment ends Succeeded, or Failed / Stopped, in which case CodeDeploy's automatic
#: rollback has pointed the alias back at the version it started from.
SUCCEEDED = "Succeeded"
ENDED_BADLY = frozenset({"Failed", "Stopped"})
STILL_RUNNING = frozenset({"Created", "Queued", "InProgress", "Baking", "Ready"})


@dataclass(frozen=True)
class Rollout:
    """`streamer:rollout`, `rolloutPercent` and `rolloutIntervalMinutes`."""

    strategy: str = ALL_AT_ONCE
    #: Canary: the share of traffic the new version gets first; linear: added each step.
    percent: int = 10
    #: Canary: minutes before the rest shifts; linear: minutes between steps.
    interval_minutes: int = 5

    @property
    def shifted(self) -> bool:
        """Whether CodeDeploy, not Pulumi, moves the alias to a new version."""
        return self.strategy != ALL_AT_ONCE

    @property
    def predefined_config(self) -> str | None:
        """CodeDeploy's own configuration of this shape; None: a custom one is needed."""
        return PREDEFINED.get((self.strategy, self.percent, self.interval_minutes))

    def traffic_routing(self) -> dict[str, Any]:
        """The custom configuration's TrafficRoutingConfig, in the API's shape."""
        kind = ROUTING_TYPES[self.strategy]
        key = "timeBasedCanary" if self.strategy == CANARY else "timeBasedLinear"
        prefix = "canary" if self.strategy == CANARY else "linear"
        return {
            "type": kind,
            key: {f"{prefix}Percentage": self.percent, f"{prefix}Interval": self.interval_minutes},
        }


def app_spec(function_name: str, alias: str, current: str, target: str) -> dict[str, Any]:
    """The AppSpec of a Lambda deployment: shift `alias` of `function_name` from version
    `current` to `target` (codedeploy/latest/userguide/reference-appspec-file-structure-
    resources.html: version 0.0, one AWS::Lambda::Function resource with Name, Alias,
    CurrentVersion, TargetVersion)."""
    if current == target:
        raise ValueError(f"{function_name}:{alias} is already on version {target}")
    return {
        "version": 0.0,
        "Resources": [
            {
                function_name: {
                    "Type": "AWS::Lambda::Function",
                    "Properties": {
                        "Name": function_name,
                        "Alias": alias,
                        "CurrentVersion": current,
                        "TargetVersion": target,
                    },
                }
            }
        ],
    }


def revision(spec: Mapping[str, Any]) -> dict[str, Any]:
    """CreateDeployment's `revision` carrying `spec` inline (RevisionLocation, revisionType
    AppSpecContent; AppSpecContent's sha256 is of the content)."""
    content = json.dumps(spec, sort_keys=True)
    return {
        "revisionType": "AppSpecContent",
        "appSpecContent": {
            "content": content,
            "sha256": hashlib.sha256(content.encode()).hexdigest(),
        },
    }


def failure(function_name: str, alias: str, current: str, info: Mapping[str, Any]) -> str | None:
    """What `pulumi up` must say about the ended deployment `info` (GetDeployment's
    `deploymentInfo`); None when it succeeded. Raises `ValueError` for one still running."""
    status = info.get("status")
    if status == SUCCEEDED:
        return None
    if status not in ENDED_BADLY:
        raise ValueError(f"deployment {info.get('deploymentId')} has not ended: {status}")
    error = info.get("errorInformation") or {}
    reason = error.get("message") or error.get("code") or "no reason given"
    alarms = info.get("rollbackInfo", {}).get("rollbackMessage")
    return (
        f"{function_name}: CodeDeploy deployment {info.get('deploymentId')} {status.lower()} "
        f"({reason}{'; ' + alarms if alarms else ''}). It was rolled back: the {alias} alias "
        f'stays on version {current}. See docs/deploying.md, "Watching a rollout".'
    )
