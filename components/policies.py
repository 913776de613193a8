"""Role policies from what each function needs (`streamer.catalog`): IAM statements.

A function's table calls (`catalog.Function.tables`, taken from the `streamer.store` calls
its entry point makes), its stream when a stream triggers it, posting to clients
(`ConnectionsAccess`) and lifecycle events (`Notifications`) become statements here or in
those components. Nothing here uses `"*"` as a resource except X-Ray and the stream
listing, whose actions accept no narrower one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi

from streamer import catalog

#: What the DynamoDB Streams event source mapping reads with the processor's role, on the
#: stream.
STREAM_READ_ACTIONS = (
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
)
#: The mapping also lists streams, which IAM grants only on "*": ListStreams has no
#: resource-level permission (IAM service authorization reference for DynamoDB; aws-cdk
#: PR 10631), so on a stream's ARN it would grant nothing.
STREAM_LIST_ACTIONS = ("dynamodb:ListStreams",)
LOG_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")
XRAY_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
MANAGE_CONNECTIONS = "execute-api:ManageConnections"

#: The functions that push messages to clients through the management API.
CONNECTION_SENDERS = tuple(f.name for f in catalog.FUNCTIONS.values() if f.posts_to_connections)


def statement(actions: Sequence[str], resources: Sequence[pulumi.Input[str]]) -> dict[str, Any]:
    """One Allow statement."""
    return {"Effect": "Allow", "Action": list(actions), "Resource": list(resources)}


def table_statements(
    function: str, arns_by_region: Mapping[str, Mapping[str, pulumi.Input[str]]]
) -> list[dict[str, Any]]:
    """Statements for `function`'s table access on the tables of every region of the stack,
    `arns_by_region` giving each region's table ARNs by logical name.

    A function writes a request at its decider's replica, which may be another region's
    (issue 16), and IAM authorizes a call on the resource it is made to: each replica is
    a table of its own region, whose ARN names that region (DynamoDB global tables
    security, globaltables-security.html: "Global tables replicas are DynamoDB tables, so
    you use the same methods for controlling access to replicas that you do for
    single-Region tables, including IAM identity policies"; the table resource type
    `arn:${Partition}:dynamodb:${Region}:${Account}:table/${TableName}`, service
    authorization reference, list_amazondynamodb.html). So each grant names the table (or
    its index) in every region, with the same actions, and nothing more.
    """
    return [
        statement(
            grant.actions,
            [
                pulumi.Output.concat(arns[grant.table], "/index/", grant.index)
                if grant.index
                else arns[grant.table]
                for arns in arns_by_region.values()
            ],
        )
        for grant in catalog.FUNCTIONS[function].tables
    ]


def stream_statements(function: str, stream_arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    """Reading the requests stream, for the function its event source mapping invokes.

    The mapping polls with the function's execution role (Lambda docs: "Process DynamoDB
    records with Lambda", execution role permissions).
    """
    if catalog.Trigger.REQUESTS_STREAM not in catalog.FUNCTIONS[function].triggers:
        return []
    return [statement(STREAM_READ_ACTIONS, [stream_arn]), statement(STREAM_LIST_ACTIONS, ["*"])]


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
