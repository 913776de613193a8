"""IAM: each function's role allows exactly the actions it calls, on exactly its resources."""

from __future__ import annotations

import re

import pytest

from components.plan import ACCOUNT, Plan

from .graph import PROJECT, connections_arn, grants, requests_stream_arn, table_arns

pytestmark = pytest.mark.infra

GET, PUT, UPDATE, DELETE, QUERY = (
    f"dynamodb:{action}" for action in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query")
)
#: The circuit breaker's items in the connections table (streamer.store.circuits).
BATCH_GET, SCAN = "dynamodb:BatchGetItem", "dynamodb:Scan"
CIRCUITS = {BATCH_GET, UPDATE}
#: Lifecycle events, on the region's own bus only.
PUT_EVENTS = "events:PutEvents"
STREAM_READ = {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"}
#: Listing streams takes no resource-level permission: only "*" grants it.
LIST_STREAMS = "dynamodb:ListStreams"
#: A table's ARN or one of its indexes' (not a stream's): region, table name, index.
TABLE_ARN = re.compile(rf"^arn:aws:dynamodb:([a-z0-9-]+):{ACCOUNT}:table/([^/]+)(/index/[^/]+)?$")

#: What each function calls, on what (from streamer.store): written out here, not taken
#: from the components. Forgetting a connection (disconnect, or a 410 on delivery) deletes
#: it and its subscriptions, found through the by-connection index.
FORGET = {
    "connections": {DELETE},
    "subscriptions/index/by_connection": {QUERY},
    "subscriptions": {DELETE},
}
CALLS: dict[str, dict[str, set[str]]] = {
    "authorizer": {},
    "connect": {"connections": {PUT}},
    "disconnect": FORGET,
    "router": {
        **FORGET,
        "requests": {GET, PUT, UPDATE},
        "requests/index/by_active_owner": {QUERY},
        "connections": {GET, DELETE} | CIRCUITS,
        "subscriptions": {GET, PUT, DELETE, QUERY},
        "bus": {PUT_EVENTS},
    },
    "processor": {
        **FORGET,
        "requests": {GET, UPDATE},
        "requests stream": STREAM_READ,
        "every stream": {LIST_STREAMS},
        # GET: the stop marker a cancel leaves (`store.stop_asked`).
        "subscriptions": {GET, QUERY, DELETE},
        "connections": {DELETE} | CIRCUITS,
        "dead letters": {"sqs:SendMessage"},
        "bus": {PUT_EVENTS},
    },
    "sweeper": {
        **FORGET,
        # Its region's heartbeat, and every region's (issue 16: streamer.store.heartbeats).
        "connections": FORGET["connections"] | {PUT, BATCH_GET},
        "requests/index/by_due": {QUERY},
        # The requests the per-user cap's index alone watches (`store.unkeyed_due_items`).
        "requests/index/by_active_owner": {SCAN},
        "requests": {BATCH_GET, UPDATE},
        "subscriptions": {QUERY, DELETE},
        "bus": {PUT_EVENTS},
    },
    "poller": {
        **FORGET,
        "requests/index/by_due": {QUERY},
        "requests": {BATCH_GET, GET, UPDATE},
        # GET: a poll runs as an attempt, whose checks read the stop marker.
        "subscriptions": {GET, QUERY, DELETE},
        "connections": {DELETE} | CIRCUITS,
        "bus": {PUT_EVENTS},
    },
    "publish": {
        **FORGET,
        "subscriptions": {PUT, QUERY, DELETE},
        "connections/index/by_user": {QUERY},
        "notification dead letters": {"sqs:SendMessage"},
    },
}
SENDERS = {"router", "processor", "sweeper", "poller", "publish"}


def stack_regions(plan: Plan) -> list[str]:
    return [p.inputs["region"] for p in plan.of_type("pulumi:providers:aws")]


def table_resources(plan: Plan, region: str) -> dict[str, str]:
    """The tables and indexes of CALLS in one region (the home table or its replica)."""
    tables = table_arns(plan, region)
    return {
        **tables,
        "subscriptions/index/by_connection": f"{tables['subscriptions']}/index/by_connection",
        "requests/index/by_due": f"{tables['requests']}/index/by_due",
        "requests/index/by_active_owner": f"{tables['requests']}/index/by_active_owner",
        "connections/index/by_user": f"{tables['connections']}/index/by_user",
    }


def expected_grants(plan: Plan, region: str, name: str) -> set[tuple[str, str]]:
    log_group = plan.named(f"{PROJECT}-{region}-{name}-logs").outputs["arn"]
    # A table call may go to any region's replica (a request's decider, issue 16): the
    # tables and indexes are granted in every region of the stack; the rest is the region's.
    resources: dict[str, list[str]] = {
        key: [table_resources(plan, each)[key] for each in stack_regions(plan)]
        for key in table_resources(plan, region)
    }
    resources |= {
        "requests stream": [requests_stream_arn(plan, region)],
        "every stream": ["*"],
        "dead letters": [plan.named(f"{PROJECT}-{region}-processor-dead-letters").outputs["arn"]],
        "bus": [plan.named(f"{PROJECT}-{region}-notifications-bus").outputs["arn"]],
        "notification dead letters": [
            plan.named(f"{PROJECT}-{region}-notifications-dead-letters").outputs["arn"]
        ],
    }
    pairs = {
        (a, resource)
        for key, actions in CALLS[name].items()
        for a in actions
        for resource in resources[key]
    }
    pairs |= {("logs:CreateLogStream", f"{log_group}:*"), ("logs:PutLogEvents", f"{log_group}:*")}
    # Tracing is on in dev and prod; X-Ray's actions accept no narrower resource.
    pairs |= {("xray:PutTraceSegments", "*"), ("xray:PutTelemetryRecords", "*")}
    if name in SENDERS:
        pairs |= {
            ("execute-api:ManageConnections", connections_arn(plan, r)) for r in stack_regions(plan)
        }
    return pairs


@pytest.mark.parametrize(
    ("stack", "region"), [("dev", "us-east-1"), ("prod", "us-east-1"), ("prod", "eu-west-1")]
)
@pytest.mark.parametrize("name", sorted(CALLS))
def test_role_allows_exactly_what_the_function_calls(
    request: pytest.FixtureRequest, stack: str, region: str, name: str
) -> None:
    # GIVEN one function of one region
    plan: Plan = request.getfixturevalue(stack)

    # WHEN every policy attached to its role is read
    allowed = grants(plan, region, name)

    # THEN it allows exactly the expected actions on exactly that region's resources, and
    # its table actions on the tables of every region of the stack
    assert allowed == expected_grants(plan, region, name)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_only_xray_uses_a_wildcard_resource(request: pytest.FixtureRequest, stack: str) -> None:
    # GIVEN every grant of every function in every region
    plan: Plan = request.getfixturevalue(stack)
    regions = [p.inputs["region"] for p in plan.of_type("pulumi:providers:aws")]
    pairs = {pair for region in regions for name in CALLS for pair in grants(plan, region, name)}

    # WHEN the wildcard resources are picked out
    wildcards = {action for action, resource in pairs if "*" in resource}
    star = {action for action, resource in pairs if resource == "*"}

    # THEN "*" is only X-Ray's and the stream listing's (neither takes a narrower resource),
    # and the other wildcards are log streams and @connections ids
    assert star == {"xray:PutTraceSegments", "xray:PutTelemetryRecords", LIST_STREAMS}
    assert wildcards - star <= {"logs:CreateLogStream", "logs:PutLogEvents"} | {
        "execute-api:ManageConnections"
    }


def test_authorizer_touches_no_table_and_router_cannot_read_the_stream(prod: Plan) -> None:
    # GIVEN the prod grants in both regions
    for region in ("us-east-1", "eu-west-1"):
        # WHEN the authorizer's and router's grants are read
        authorizer = grants(prod, region, "authorizer")
        router = grants(prod, region, "router")

        # THEN the authorizer has no DynamoDB action and the router no stream action
        assert not [a for a, _ in authorizer if a.startswith("dynamodb:")]
        assert not [a for a, _ in router if a in {*STREAM_READ, LIST_STREAMS}]
        assert not [r for _, r in router if "/stream/" in r]


def test_senders_may_post_through_every_regional_api_of_the_stack(prod: Plan) -> None:
    # GIVEN the two regional APIs of prod
    apis = {connections_arn(prod, region) for region in ("us-east-1", "eu-west-1")}

    for region in ("us-east-1", "eu-west-1"):
        for name in sorted(CALLS):
            # WHEN a function's @connections grants are read
            posting = {r for a, r in grants(prod, region, name) if a.startswith("execute-api:")}

            # THEN the senders reach both APIs (a subscriber may be connected to the
            # other region); the others reach none
            assert posting == (apis if name in SENDERS else set()), (region, name)


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_each_function_has_the_same_table_actions_on_every_regions_replica(
    prod: Plan, region: str, name: str
) -> None:
    # GIVEN one function of prod (us-east-1 and eu-west-1) and the tables' names
    names = prod.outputs["tableNames"]

    # WHEN its DynamoDB grants on tables are grouped by the region their ARN names
    by_region: dict[str, set[tuple[str, str]]] = {}
    for action, resource in grants(prod, region, name):
        match = TABLE_ARN.match(resource)
        if action.startswith("dynamodb:") and match:
            replica, table, index = match.groups()
            by_region.setdefault(replica, set()).add((action, f"{table}{index or ''}"))

    # THEN each is a replica's ARN (`arn:aws:dynamodb:<region>:<account>:table/<name>`,
    # its indexes `/index/<name>`) in a region of the stack, with the same actions on the
    # same tables in each: a write to the decider's replica in the other region is allowed
    # exactly as one to its own, and no other table is
    if not CALLS[name]:
        assert by_region == {}
        return
    assert set(by_region) == {"us-east-1", "eu-west-1"}
    assert by_region["us-east-1"] == by_region["eu-west-1"]
    assert {table.split("/")[0] for _, table in by_region[region]} <= set(names.values())


def test_a_single_region_stack_grants_its_own_tables_only(dev: Plan) -> None:
    # GIVEN dev, one region  WHEN every function's table grants are read
    regions = {
        TABLE_ARN.match(resource).group(1)
        for name in CALLS
        for action, resource in grants(dev, "us-east-1", name)
        if action.startswith("dynamodb:") and TABLE_ARN.match(resource)
    }

    # THEN they name us-east-1 only
    assert regions == {"us-east-1"}
