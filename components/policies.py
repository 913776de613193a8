"""What each function may do, on which resources: the data behind every role policy.

One grant per (table or index, actions) pair, taken from the `streamer.store` calls each
entry point makes (a change there that calls DynamoDB differently needs one here).
Nothing here uses `"*"` as a resource except X-Ray and the stream listing, whose actions
accept no narrower one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from streamer.schema import (
    CONNECTIONS,
    CONNECTIONS_BY_USER,
    REQUESTS,
    REQUESTS_BY_ACTIVE_OWNER,
    REQUESTS_BY_DUE,
    SUBSCRIPTIONS,
    SUBSCRIPTIONS_BY_CONNECTION,
)

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
CONNECTION_SENDERS = ("router", "processor", "sweeper", "poller", "publish")


@dataclass(frozen=True)
class TableGrant:
    """Actions on one table, or on one of its indexes when `index` is set."""

    table: str
    actions: tuple[str, ...]
    index: str | None = None


#: What `store.forget_connection` does: delete the connection, then its subscriptions,
#: found through the by-connection index. The disconnect function calls it, and so does
#: every function that delivers messages, when the management API answers 410 (gone).
_FORGET_CONNECTION = (
    TableGrant(CONNECTIONS.logical_name, ("dynamodb:DeleteItem",)),
    TableGrant(SUBSCRIPTIONS.logical_name, ("dynamodb:Query",), index=SUBSCRIPTIONS_BY_CONNECTION),
    TableGrant(SUBSCRIPTIONS.logical_name, ("dynamodb:DeleteItem",)),
)

#: Per function, the table calls of `streamer.store` its entry point makes.
TABLE_GRANTS: Mapping[str, tuple[TableGrant, ...]] = {
    "authorizer": (),
    "connect": (TableGrant(CONNECTIONS.logical_name, ("dynamodb:PutItem",)),),
    "disconnect": _FORGET_CONNECTION,
    "router": (
        # get_request; create_request; request_cancel and finish_request.
        TableGrant(
            REQUESTS.logical_name, ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        ),
        # count_active (the per-user cap).
        TableGrant(REQUESTS.logical_name, ("dynamodb:Query",), index=REQUESTS_BY_ACTIVE_OWNER),
        # touch_connection (ping); the rate limit's bucket (refill_bucket,
        # take_token) and its read when both refuse.
        TableGrant(CONNECTIONS.logical_name, ("dynamodb:GetItem", "dynamodb:UpdateItem")),
        # subscribe, unsubscribe, subscribers; a topic's retained row (get_subscription).
        TableGrant(
            SUBSCRIPTIONS.logical_name,
            ("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"),
        ),
        *_FORGET_CONNECTION,
    ),
    "processor": (
        # cancel_requested; claim, save_progress, schedule_retry, finish_request.
        TableGrant(REQUESTS.logical_name, ("dynamodb:GetItem", "dynamodb:UpdateItem")),
        # subscribers.
        TableGrant(SUBSCRIPTIONS.logical_name, ("dynamodb:Query",)),
        *_FORGET_CONNECTION,
    ),
    "sweeper": (
        # due_requests.
        TableGrant(REQUESTS.logical_name, ("dynamodb:Query",), index=REQUESTS_BY_DUE),
        # redrive_request, finish_request.
        TableGrant(REQUESTS.logical_name, ("dynamodb:UpdateItem",)),
        # subscribers.
        TableGrant(SUBSCRIPTIONS.logical_name, ("dynamodb:Query",)),
        *_FORGET_CONNECTION,
    ),
    "poller": (
        # waiting_requests.
        TableGrant(REQUESTS.logical_name, ("dynamodb:Query",), index=REQUESTS_BY_DUE),
        # cancel_requested; claim_poll, save_progress, wait_request, finish_request.
        TableGrant(REQUESTS.logical_name, ("dynamodb:GetItem", "dynamodb:UpdateItem")),
        # subscribers.
        TableGrant(SUBSCRIPTIONS.logical_name, ("dynamodb:Query",)),
        *_FORGET_CONNECTION,
    ),
    "http": (
        # A caller without a connection: get_request (also the long poll),
        # create_request, finish_request of a sync request with an id; count_active.
        TableGrant(
            REQUESTS.logical_name, ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        ),
        TableGrant(REQUESTS.logical_name, ("dynamodb:Query",), index=REQUESTS_BY_ACTIVE_OWNER),
    ),
    "publish": (
        # retain (a topic's last message), subscribers_of_key.
        TableGrant(SUBSCRIPTIONS.logical_name, ("dynamodb:PutItem", "dynamodb:Query")),
        # connections_of_user.
        TableGrant(CONNECTIONS.logical_name, ("dynamodb:Query",), index=CONNECTIONS_BY_USER),
        *_FORGET_CONNECTION,
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
