"""Per-tenant views from the JSON logs, without a metric per tenant.

CloudWatch Contributor Insights rules rank tenants by requests, failures and time spent
over the functions' log groups (billed per matched log event, not per tenant), and saved
Logs Insights queries answer the common investigations. Both read the fields every
Streamer log line carries (docs/operations.md, "Log fields"); `LOG_FIELDS` names the
ones used here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

#: The log line fields the rules and queries read (streamer.logs, docs/operations.md).
TENANT = "tenant_id"
REQUEST = "request_id"
ACTION = "action"
STATUS = "status"
DURATION = "duration_ms"
LEVEL = "level"
MESSAGE = "message"
CORRELATION = "correlation_id"
CONNECTION = "connection_id"
LOG_FIELDS = (TENANT, REQUEST, ACTION, STATUS, DURATION, LEVEL, MESSAGE, CORRELATION, CONNECTION)

#: Log levels of lines that report a failure.
FAILURE_LEVELS = ("ERROR", "CRITICAL")


def _field(name: str) -> str:
    """A field in Contributor Insights' JSON property notation."""
    return f"$.{name}"


def _present(name: str) -> dict[str, Any]:
    return {"Match": _field(name), "IsPresent": True}


#: The rules, by the suffix of their name: what ranks tenants, and on which lines.
#: Syntax: AmazonCloudWatch/latest/monitoring/ContributorInsights-RuleSyntax.html (at most
#: four keys and four filters, ANDed; `ValueOf` only with `AggregateOn: Sum`).
CONTRIBUTIONS: Mapping[str, dict[str, Any]] = {
    # Every line that ends a piece of work (an answer, an attempt) carries its duration.
    "tenants-by-requests": {
        "Contribution": {
            "Keys": [_field(TENANT)],
            "Filters": [_present(TENANT), _present(DURATION)],
        },
        "AggregateOn": "Count",
    },
    "tenants-by-failures": {
        "Contribution": {
            "Keys": [_field(TENANT)],
            "Filters": [_present(TENANT), {"Match": _field(LEVEL), "In": list(FAILURE_LEVELS)}],
        },
        "AggregateOn": "Count",
    },
    "tenants-by-duration": {
        "Contribution": {
            "Keys": [_field(TENANT)],
            "ValueOf": _field(DURATION),
            "Filters": [_present(TENANT), _present(DURATION)],
        },
        "AggregateOn": "Sum",
    },
}


def rule_definition(contribution: Mapping[str, Any], log_group_names: Sequence[str]) -> str:
    """A Contributor Insights rule body over `log_group_names`' JSON log lines."""
    return json.dumps(
        {
            "Schema": {"Name": "CloudWatchLogRule", "Version": 1},
            "LogGroupNames": list(log_group_names),
            "LogFormat": "JSON",
            **contribution,
        },
        sort_keys=True,
    )


#: Saved Logs Insights queries, by the last part of their name; `<...>` is what the
#: engineer replaces before running one (logs/latest/userguide/CWL_QuerySyntax.html).
QUERIES: Mapping[str, str] = {
    "request-story": (
        f"fields @timestamp, @log, {LEVEL}, {MESSAGE}, {ACTION}, {STATUS}, {DURATION}\n"
        f'| filter {REQUEST} = "<request id>"\n'
        "| sort @timestamp asc"
    ),
    "tenant-failures": (
        f"fields @timestamp, @log, {REQUEST}, {ACTION}, {STATUS}, {MESSAGE}, {CORRELATION}\n"
        f'| filter {TENANT} = "<tenant id>"'
        f' and ({LEVEL} in ["ERROR", "CRITICAL"] or {STATUS} in ["FAILED", "TIMEOUT"])\n'
        "| sort @timestamp desc\n"
        "| limit 200"
    ),
    "slowest-requests": (
        f"fields @timestamp, @log, {TENANT}, {ACTION}, {REQUEST}, {MESSAGE}, {DURATION}\n"
        f"| filter ispresent({DURATION})\n"
        f"| sort {DURATION} desc\n"
        "| limit 50"
    ),
    "errors-by-correlation-id": (
        f"fields @timestamp, @log, {TENANT}, {REQUEST}, {ACTION}, {MESSAGE}, exception\n"
        f'| filter {CORRELATION} = "<correlation id>"\n'
        "| sort @timestamp asc"
    ),
}


@dataclass
class TenantInsightsArgs:
    """The name prefix and the log groups the rules and queries read."""

    prefix: str
    log_group_names: Sequence[pulumi.Input[str]]


class TenantInsights(pulumi.ComponentResource):
    """The region's Contributor Insights rules and saved Logs Insights queries."""

    #: The rules' names in AWS, by `CONTRIBUTIONS` key (the dashboard shows each one).
    rule_names: dict[str, str]

    def __init__(
        self, name: str, args: TenantInsightsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("streamer:components:TenantInsights", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        groups = pulumi.Output.all(*args.log_group_names)
        self.rule_names = {}
        rules = []
        for key, contribution in CONTRIBUTIONS.items():
            self.rule_names[key] = f"{args.prefix}-{key}"
            rules.append(
                aws.cloudwatch.ContributorInsightRule(
                    f"{name}-{key}",
                    rule_name=self.rule_names[key],
                    rule_state="ENABLED",
                    rule_definition=groups.apply(
                        lambda names, c=contribution: rule_definition(c, names)
                    ),
                    opts=child,
                )
            )
        for key, query in QUERIES.items():
            aws.cloudwatch.QueryDefinition(
                f"{name}-{key}",
                # A `/` files the query in a folder of that name in the console.
                name=f"{args.prefix}/{key}",
                query_string=query,
                log_group_names=list(args.log_group_names),
                opts=child,
            )
        self.register_outputs({"rule_names": self.rule_names})
