"""What each function may do, on which resources: the data behind every role policy.

One grant per (table or index, actions) pair, taken from what the entry points call.
Nothing here uses `"*"` as a resource except X-Ray, whose actions accept no narrower one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from streamer.schema import (
    CONNECTIONS,
    REQUESTS,
    REQUESTS_BY_DUE,
    SUBSCRIPTIONS,
    SUBSCRIPTIONS_BY_CONNECTION,
)

#: What the DynamoDB Streams event source mapping reads with the processor's role.
STREAM_READ_ACTIONS = (
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
)
LOG_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")
XRAY_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
MANAGE_CONNECTIONS = "execute-api:ManageConnections"

#: The functions that push messages to clients through the management API.
CONNECTION_SENDERS = ("router", "processor", "sweeper")


@dataclass(frozen=True)
class TableGrant:
    """Actions on one table, or on one of its indexes when `index` is set."""

    table: str
    actions: tuple[str, ...]
    index: str | None = None


TABLE_GRANTS: Mapping[str, tuple[TableGrant, ...]] = {
    "authorizer": (),
    "connect": (TableGrant(CONNECTIONS.logical_name, ("dynamodb:PutItem",)),),
    "disconnect": (
        TableGrant(CONNECTIONS.logical_name, ("dynamodb:DeleteItem",)),
        TableGrant(
            SUBSCRIPTIONS.logical_name, ("dynamodb:Query",), index=SUBSCRIPTIONS_BY_CONNECTION
        ),
        TableGrant(SUBSCRIPTIONS.logical_name, ("dynamodb:BatchWriteItem", "dynamodb:DeleteItem")),
    ),
    "router": (
        TableGrant(
            REQUESTS.logical_name,
            (
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
            ),
        ),
        TableGrant(CONNECTIONS.logical_name, ("dynamodb:GetItem", "dynamodb:UpdateItem")),
        TableGrant(
            SUBSCRIPTIONS.logical_name,
            ("dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Query"),
        ),
    ),
    "processor": (
        TableGrant(REQUESTS.logical_name, ("dynamodb:GetItem", "dynamodb:UpdateItem")),
        TableGrant(CONNECTIONS.logical_name, ("dynamodb:DeleteItem", "dynamodb:GetItem")),
        TableGrant(SUBSCRIPTIONS.logical_name, ("dynamodb:DeleteItem", "dynamodb:Query")),
    ),
    "sweeper": (
        TableGrant(REQUESTS.logical_name, ("dynamodb:Query",), index=REQUESTS_BY_DUE),
        TableGrant(REQUESTS.logical_name, ("dynamodb:UpdateItem",)),
        TableGrant(CONNECTIONS.logical_name, ("dynamodb:DeleteItem", "dynamodb:GetItem")),
        TableGrant(SUBSCRIPTIONS.logical_name, ("dynamodb:Query",)),
    ),
}


def statement(actions: Sequence[str], resources: Sequence[pulumi.Input[str]]) -> dict[str, Any]:
    """One Allow statement."""
    return {"Effect": "Allow", "Action": list(actions), "Resource": list(resources)}


def table_statements(
    function: str, table_arns: Mapping[str, pulumi.Input[str]]
) -> list[dict[str, Any]]:
    """Statements for `function`'s table grants, with `table_arns` keyed by logical name."""
    return [
        statement(
            grant.actions,
            [
                pulumi.Output.concat(table_arns[grant.table], "/index/", grant.index)
                if grant.index
                else table_arns[grant.table]
            ],
        )
        for grant in TABLE_GRANTS[function]
    ]


def connections_arn(execution_arn: pulumi.Input[str], stage: str) -> pulumi.Output[str]:
    """The `@connections` ARN of one API stage, for posting to its clients."""
    return pulumi.Output.concat(execution_arn, "/", stage, "/POST/@connections/*")


def document(statements: Sequence[dict[str, Any]]) -> pulumi.Output[str]:
    """A policy document as JSON, resolving any outputs inside the statements."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def assume_role_document(service: str) -> str:
    """A trust policy letting `service` (e.g. lambda.amazonaws.com) assume the role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )
