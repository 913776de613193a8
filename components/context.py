"""What every function of one region is built from, passed to the components that add one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components.settings import StackSettings, VpcSettings
from components.tables import RegionalTables


@dataclass(frozen=True)
class RegionalContext:
    """Name prefix, the stack's settings, the region's tables, code and layers, alarm targets."""

    prefix: str
    settings: StackSettings
    tables: RegionalTables
    code: pulumi.Archive
    code_sha256: str
    #: The layers every function of the region gets, in order: the managed Powertools layer,
    #: the dependency layer, the app's layer (if any), the tracing layer when traced.
    layer_arns: Sequence[pulumi.Input[str]]
    alarm_actions: Sequence[pulumi.Input[str]]
    #: The region's customer-managed key (components/keys.py); None: AWS-owned keys.
    kms_key_arn: pulumi.Input[str] | None = None
    #: The region's VPC for the functions; None: none.
    vpc: VpcSettings | None = None
