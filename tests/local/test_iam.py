"""The local stack refuses what IAM refuses on AWS: each function gets only its role's grants.

Each test runs a catalog function's name (so its role) in an execution environment, with a
handler (`tests.local.iam_lambdas.call`) that makes one call through the runtime's own
botocore session against a moto server with the stack's tables, and says what the SDK
answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from local import dynamodb, zygote
from local.functions import FunctionSpec, LambdaFunction
from local.isolation import IsolatedFunction
from streamer import config

REGION, ACCOUNT = "eu-west-1", "111122223333"
TABLES = {
    "connections": "iam-connections",
    "requests": "iam-requests",
    "subscriptions": "iam-subscriptions",
}
#: A management endpoint nothing listens on: a call the role allows fails to connect, one
#: it refuses never leaves the process.
MANAGEMENT_URL = "http://127.0.0.1:9"
HANDLER = "tests.local.iam_lambdas.call"
BUS = "iam-lifecycle"
STORE_CALL = "tests.local.iam_lambdas.store_call"
REMEMBER = "tests.local.lambdas.remember"


@pytest.fixture(scope="module")
def tables() -> Iterator[str]:
    """A moto server with the stack's tables, and the environment the functions get."""
    server = dynamodb.MotoServer("127.0.0.1", REGION)
    try:
        dynamodb.create_tables(server.endpoint_url, REGION, TABLES)
        dynamodb.client("events", server.endpoint_url, REGION).create_event_bus(Name=BUS)
        with pytest.MonkeyPatch.context() as environment:
            for name, value in {
                config.REGION: REGION,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_ACCESS_KEY_ID": dynamodb.ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": dynamodb.SECRET_KEY,
                "AWS_ENDPOINT_URL_DYNAMODB": server.endpoint_url,
                "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
                config.CONNECTIONS_TABLE: TABLES["connections"],
                config.REQUESTS_TABLE: TABLES["requests"],
                config.SUBSCRIPTIONS_TABLE: TABLES["subscriptions"],
                config.MANAGEMENT_ENDPOINT: f"local={MANAGEMENT_URL}",
                config.EVENT_BUS: BUS,
                "AWS_ENDPOINT_URL_EVENTBRIDGE": server.endpoint_url,
            }.items():
                environment.setenv(name, value)
            environment.delenv("AWS_SESSION_TOKEN", raising=False)
            environment.delenv(config.REGIONS, raising=False)
            # A zygote like the stack's: the runtime's botocore session made before the fork.
            zygote.stop_shared()
            zygote.shared(("streamer.aws",))
            yield server.endpoint_url
    finally:
        zygote.stop_shared()
        server.stop()


def run_as(
    function: str, event: dict[str, Any], *, threads: bool = False, handler: str = HANDLER
) -> dict[str, Any]:
    """Invoke `handler` once as the local stack runs catalog function `function`."""
    spec = FunctionSpec(f"streamer-{function}", handler, timeout_s=30)
    kind = LambdaFunction if threads else IsolatedFunction
    lambda_function = kind(spec, REGION, ACCOUNT)
    try:
        return lambda_function.invoke(event)
    finally:
        lambda_function.close()


def dynamodb_call(operation: str, **params: Any) -> dict[str, Any]:
    return {"service": "dynamodb", "operation": operation, "params": params}


def table_arn(logical: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLES[logical]}"


def refusal(function: str, action: str, resource: str) -> dict[str, Any]:
    """What the SDK raises on AWS when `function`'s role lacks `action` on `resource`."""
    role = f"arn:aws:sts::{ACCOUNT}:assumed-role/streamer-{function}-role/streamer-{function}"
    return {
        "class": "ClientError",
        "code": "AccessDeniedException",
        "message": (
            f"User: {role} is not authorized to perform: {action} on resource: {resource} "
            f"because no identity-based policy allows the {action} action"
        ),
        "status": 400,
    }


SUBSCRIPTION_KEY = {"request_key": {"S": "t#u#r1"}, "connection_id": {"S": "stop"}}


def test_a_read_of_a_table_the_role_does_not_grant_fails_as_on_aws(tables: str) -> None:
    # GIVEN the poller, whose role reads the connections table only as circuit items
    # WHEN it reads one item there
    answer = run_as(
        "poller",
        dynamodb_call("get_item", TableName="iam-connections", Key={"connection_id": {"S": "c1"}}),
    )

    # THEN the SDK raises what DynamoDB answers a role without the grant: 400, the
    # AccessDeniedException code and IAM's implicit-deny message
    assert answer == {"error": refusal("poller", "dynamodb:GetItem", table_arn("connections"))}


def test_a_read_the_role_grants_reaches_the_table(tables: str) -> None:
    # GIVEN the poller, whose attempts read a request's stop marker
    # WHEN it reads the marker's row of the subscriptions table
    answer = run_as(
        "poller", dynamodb_call("get_item", TableName="iam-subscriptions", Key=SUBSCRIPTION_KEY)
    )

    # THEN DynamoDB answers it (no such row)
    assert answer == {"answer": {}}


def test_a_query_is_authorized_on_the_index_it_reads(tables: str) -> None:
    # GIVEN the sweeper, allowed the requests' due index, and the router, allowed only the
    # active-owner index of the same table
    due = dynamodb_call(
        "query",
        TableName="iam-requests",
        IndexName="by_due",
        KeyConditionExpression="due_region = :r",
        ExpressionAttributeValues={":r": {"S": "eu-west-1#0"}},
    )

    # WHEN each queries the due index
    # THEN the sweeper reads it and the router is refused on the index's own ARN
    assert run_as("sweeper", due) == {"answer": {"Count": 0, "Items": [], "ScannedCount": 0}}
    assert run_as("router", due) == {
        "error": refusal("router", "dynamodb:Query", f"{table_arn('requests')}/index/by_due")
    }


def test_a_batch_read_is_refused_for_any_table_the_role_does_not_grant(tables: str) -> None:
    # GIVEN the sweeper, which batch-reads requests and heartbeats, not subscriptions
    requests = {"Keys": [{"request_key": {"S": "t#u#r1"}}]}
    heartbeats = {"Keys": [{"connection_id": {"S": "heartbeat#eu-west-1"}}]}
    subscriptions = {"Keys": [SUBSCRIPTION_KEY]}

    # WHEN it batch-reads its two tables, then those and the subscriptions table
    allowed = run_as(
        "sweeper",
        dynamodb_call(
            "batch_get_item",
            RequestItems={"iam-requests": requests, "iam-connections": heartbeats},
        ),
    )
    refused = run_as(
        "sweeper",
        dynamodb_call(
            "batch_get_item",
            RequestItems={
                "iam-requests": requests,
                "iam-connections": heartbeats,
                "iam-subscriptions": subscriptions,
            },
        ),
    )

    # THEN the first is read, and the second refused on the table it may not read
    assert allowed["answer"]["Responses"] == {"iam-requests": [], "iam-connections": []}
    assert refused == {
        "error": refusal("sweeper", "dynamodb:BatchGetItem", table_arn("subscriptions"))
    }


def test_a_transaction_is_authorized_item_by_item_as_the_underlying_writes(tables: str) -> None:
    # GIVEN the connect function, which may only put connections
    def put(table: str, key: dict) -> dict:
        return {"Put": {"TableName": table, "Item": key}}

    # WHEN one transaction puts a connection and a request
    answer = run_as(
        "connect",
        dynamodb_call(
            "transact_write_items",
            TransactItems=[
                put("iam-connections", {"connection_id": {"S": "c1"}}),
                put("iam-requests", {"request_key": {"S": "t#u#r1"}}),
            ],
        ),
    )

    # THEN it is refused as a PutItem on the requests table
    assert answer == {"error": refusal("connect", "dynamodb:PutItem", table_arn("requests"))}


def management_call(operation: str) -> dict[str, Any]:
    return {
        "service": "apigatewaymanagementapi",
        "operation": operation,
        "client": {"endpoint_url": MANAGEMENT_URL, "region_name": REGION},
        "params": {"ConnectionId": "c1"},
    }


def test_only_posting_to_connections_is_granted_and_only_to_senders(tables: str) -> None:
    # GIVEN the router (a sender, granted POST on @connections) and connect (no sender)
    # WHEN the router deletes a connection, and connect posts to one
    deleted = run_as("router", management_call("delete_connection"))
    posted = run_as(
        "connect",
        {
            **management_call("post_to_connection"),
            "params": {"ConnectionId": "c1", "Data": b"{}".decode()},
        },
    )

    # THEN both are refused as API Gateway refuses them: 403, AccessDeniedException,
    # ManageConnections on the method's @connections resource
    def refused(function: str, method: str) -> dict[str, Any]:
        resource = (
            f"arn:aws:execute-api:{REGION}:{ACCOUNT}:local/local/{method}"
            "/@connections/{connectionId}"
        )
        expected = refusal(function, "execute-api:ManageConnections", resource)
        return {"error": {**expected, "status": 403}}

    assert deleted == refused("router", "DELETE")
    assert posted == refused("connect", "POST")


def test_threads_mode_refuses_the_same_calls(tables: str) -> None:
    # GIVEN the poller run in a thread of this process (`--invocations threads`)
    read = dynamodb_call("get_item", TableName="iam-connections", Key={"connection_id": {"S": "c"}})

    # WHEN it reads a table its role does not grant, and one it does
    refused = run_as("poller", read, threads=True)
    allowed = run_as(
        "poller",
        dynamodb_call("get_item", TableName="iam-subscriptions", Key=SUBSCRIPTION_KEY),
        threads=True,
    )

    # THEN it is refused and allowed as in its own execution environment
    assert refused == {"error": refusal("poller", "dynamodb:GetItem", table_arn("connections"))}
    assert allowed == {"answer": {}}


@pytest.mark.parametrize("function", ["poller", "processor"])
def test_an_attempt_of_a_function_that_runs_one_reads_the_stop_marker(
    tables: str, function: str
) -> None:
    # GIVEN a function that runs attempts (the processor's requests, the poller's polls),
    # whose cancellation checks read a request's stop marker (`streamer.attempt`)
    # WHEN it asks the store whether a request was asked to stop, as those checks do
    answer = run_as(function, {"call": "stop_asked", "args": ["t#u", "r1"]}, handler=STORE_CALL)

    # THEN the store answers (no marker) instead of failing as the role would have it
    assert answer == {"answer": False}


def test_a_function_whose_settings_cannot_be_read_still_runs_its_handler(
    tables: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the router with a malformed setting, in a thread of this process; its handler
    # answers such a setting itself (an INTERNAL_ERROR with the message's id)
    monkeypatch.setenv(config.ASYNC_THRESHOLD_MS, "soon")

    # WHEN it is invoked with a handler that makes no AWS call
    answer = run_as("router", {"hello": "world"}, threads=True, handler=REMEMBER)

    # THEN the handler ran: the role is read at the first AWS call, not before the handler
    assert answer["event"] == {"hello": "world"}


def test_only_the_lifecycle_publishers_put_events_on_the_bus(tables: str) -> None:
    # GIVEN the sweeper (it puts lifecycle events) and the HTTP function (it does not)
    event = {
        "service": "events",
        "operation": "put_events",
        "params": {
            "Entries": [
                {"Source": "streamer", "DetailType": "Request Completed", "Detail": "{}"}
                | {"EventBusName": BUS}
            ]
        },
    }

    # WHEN each puts an event on the stack's bus
    published = run_as("sweeper", event)
    refused = run_as("http", event)

    # THEN the sweeper's is accepted, and the HTTP function's refused as EventBridge refuses
    # it (its model names the error, so the SDK raises that class of ClientError)
    assert published["answer"]["FailedEntryCount"] == 0
    bus_arn = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{BUS}"
    expected = refusal("http", "events:PutEvents", bus_arn)
    assert refused == {"error": {**expected, "class": "AccessDeniedException"}}
