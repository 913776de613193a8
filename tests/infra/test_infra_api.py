"""The WebSocket API: authorizer on $connect only, two-way $default, scoped invoke rights."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest

from components import plan
from components.api import CONNECT, DEFAULT, DISCONNECT, WebSocketApi, WebSocketApiArgs
from components.plan import Plan, PlanMocks
from components.settings import Throttle

from .graph import PROJECT, alias, function

pytestmark = pytest.mark.infra

REGIONS = {"dev": ["us-east-1"], "prod": ["us-east-1", "eu-west-1"]}


def api_resources(plan: Plan, region: str, type_: str) -> list:
    return [r for r in plan.descendants(f"{PROJECT}-{region}-websocket") if r.type == type_]


def stacks_and_regions() -> list[tuple[str, str]]:
    return [(stack, region) for stack, regions in REGIONS.items() for region in regions]


@pytest.mark.parametrize(("stack", "region"), stacks_and_regions())
def test_authorizer_guards_connect_and_nothing_else(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's API
    plan: Plan = request.getfixturevalue(stack)
    (authorizer,) = api_resources(plan, region, "aws:apigatewayv2/authorizer:Authorizer")
    routes = {
        r.inputs["routeKey"]: r for r in api_resources(plan, region, "aws:apigatewayv2/route:Route")
    }

    # WHEN the routes' authorization is read
    guarded = {key for key, route in routes.items() if route.inputs.get("authorizerId")}

    # THEN only $connect uses the REQUEST authorizer, reading the token query parameter
    assert set(routes) == {"$connect", "$disconnect", "$default"}
    assert guarded == {"$connect"}
    assert routes["$connect"].inputs["authorizerId"] == authorizer.id
    assert routes["$connect"].inputs["authorizationType"] == "CUSTOM"
    assert routes["$disconnect"].inputs["authorizationType"] == "NONE"
    assert routes["$default"].inputs["authorizationType"] == "NONE"
    assert authorizer.inputs["authorizerType"] == "REQUEST"
    assert authorizer.inputs["identitySources"] == ["route.request.querystring.token"]
    assert (
        authorizer.inputs["authorizerUri"]
        == (alias(plan, region, "authorizer").outputs["invokeArn"])
    )


@pytest.mark.parametrize(("stack", "region"), stacks_and_regions())
def test_default_route_answers_through_its_route_response(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's API
    plan: Plan = request.getfixturevalue(stack)
    api = plan.named(f"{PROJECT}-{region}-websocket-api")
    default = plan.named(f"{PROJECT}-{region}-websocket-default-route")

    # WHEN its route responses are read
    responses = api_resources(plan, region, "aws:apigatewayv2/routeResponse:RouteResponse")

    # THEN $default is two-way: one $default route response on the $default route
    assert api.inputs["protocolType"] == "WEBSOCKET"
    assert api.inputs["routeSelectionExpression"] == "$request.body.action"
    assert default.inputs["routeResponseSelectionExpression"] == "$default"
    assert [(r.inputs["routeId"], r.inputs["routeResponseKey"]) for r in responses] == [
        (default.id, "$default")
    ]


@pytest.mark.parametrize(("stack", "region"), stacks_and_regions())
def test_routes_invoke_their_functions_only_from_this_api(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's API and its functions
    plan: Plan = request.getfixturevalue(stack)
    execution_arn = plan.named(f"{PROJECT}-{region}-websocket-api").outputs["executionArn"]
    stage = plan.named(f"{PROJECT}-{region}-websocket-stage").inputs["name"]
    behind = {"$connect": "connect", "$disconnect": "disconnect", "$default": "router"}

    # WHEN the integrations and invoke permissions are read
    integrations = {
        r.name: r for r in api_resources(plan, region, "aws:apigatewayv2/integration:Integration")
    }
    permissions = {
        r.inputs["function"]: r
        for r in api_resources(plan, region, "aws:lambda/permission:Permission")
    }

    # THEN each route proxies to its function's live alias, which only this API's stage
    # may invoke
    for key, name in behind.items():
        slug = key.lstrip("$")
        route = plan.named(f"{PROJECT}-{region}-websocket-{slug}-route")
        integration = integrations[f"{PROJECT}-{region}-websocket-{slug}-integration"]
        target = function(plan, region, name)
        assert route.inputs["target"] == f"integrations/{integration.id}"
        assert integration.inputs["integrationType"] == "AWS_PROXY"
        assert (
            integration.inputs["integrationUri"] == alias(plan, region, name).outputs["invokeArn"]
        )
        permission = permissions[target.outputs["name"]]
        assert permission.inputs["qualifier"] == "live"
        assert permission.inputs["principal"] == "apigateway.amazonaws.com"
        assert permission.inputs["sourceArn"] == f"{execution_arn}/{stage}/{key}"
    authorizer = plan.named(f"{PROJECT}-{region}-websocket-authorizer")
    authorizer_permission = permissions[function(plan, region, "authorizer").outputs["name"]]
    assert authorizer_permission.inputs["sourceArn"] == (
        f"{execution_arn}/authorizers/{authorizer.id}"
    )


@pytest.mark.parametrize(("stack", "burst", "rate"), [("dev", 100, 50), ("prod", 1000, 500)])
def test_stage_is_throttled_and_logs_access(
    request: pytest.FixtureRequest, stack: str, burst: int, rate: int
) -> None:
    # GIVEN the stack's stages
    plan: Plan = request.getfixturevalue(stack)

    for region in REGIONS[stack]:
        # WHEN a region's stage is read
        stage = plan.named(f"{PROJECT}-{region}-websocket-stage")
        logs = plan.named(f"{PROJECT}-{region}-websocket-access-logs")

        # THEN it throttles as configured and writes JSON access logs with retention
        settings = stage.inputs["defaultRouteSettings"]
        assert (settings["throttlingBurstLimit"], settings["throttlingRateLimit"]) == (burst, rate)
        assert stage.inputs["name"] == stack
        deployment = plan.named(f"{PROJECT}-{region}-websocket-deployment")
        assert stage.inputs["deploymentId"] == deployment.id
        assert stage.inputs["accessLogSettings"]["destinationArn"] == logs.outputs["arn"]
        fields = json.loads(stage.inputs["accessLogSettings"]["format"])
        assert {"requestId", "connectionId", "routeKey", "status"} <= set(fields)
        assert "token" not in stage.inputs["accessLogSettings"]["format"].lower()
        assert logs.inputs["retentionInDays"] == (14 if stack == "dev" else 90)


@pytest.mark.parametrize(("stack", "region"), stacks_and_regions())
def test_deployment_follows_every_route_integration_and_the_authorizer(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's deployment
    plan: Plan = request.getfixturevalue(stack)
    deployment = plan.named(f"{PROJECT}-{region}-websocket-deployment")

    # WHEN what it waits for is read
    routing = [
        r.name
        for r in plan.descendants(f"{PROJECT}-{region}-websocket")
        if r.type.split(":")[-1] in {"Route", "Integration", "RouteResponse", "Authorizer"}
    ]

    # THEN it comes after all of them and carries a digest of them as its trigger
    assert len(routing) == 8
    assert set(routing) <= set(deployment.depends_on)
    assert len(deployment.inputs["triggers"]["routes"]) == 64


#: The resources a WebSocket deployment snapshots: API Gateway serves their state as of
#: the last deployment (apigateway-set-up-websocket-deployment).
ROUTING = {
    "aws:apigatewayv2/authorizer:Authorizer": aws.apigatewayv2.AuthorizerArgs,
    "aws:apigatewayv2/integration:Integration": aws.apigatewayv2.IntegrationArgs,
    "aws:apigatewayv2/route:Route": aws.apigatewayv2.RouteArgs,
    "aws:apigatewayv2/routeResponse:RouteResponse": aws.apigatewayv2.RouteResponseArgs,
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def routing_arguments() -> list[tuple[str, str]]:
    """(type, argument) for every argument the provider's SDK lets these resources take,
    read from their `*Args` classes, not from the component."""
    return [
        (type_, _camel(name))
        for type_, args in ROUTING.items()
        for name in inspect.signature(args.__init__).parameters
        if name != "__self__"
    ]


def _other(value: Any) -> Any:
    """A different value of the same kind, as AWS would report after an in-place update."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, list):
        return [*value, "changed"]
    if isinstance(value, dict):
        return {**value, "changed": "changed"}
    return f"{value}-changed" if value else "changed"


class ReportingMocks(PlanMocks):
    """Mocks whose resources of `type_` report `argument` with another value."""

    def __init__(self, type_: str | None = None, argument: str | None = None) -> None:
        super().__init__()
        self.type, self.argument = type_, argument

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        resource_id, outputs = super().new_resource(args)
        if args.typ == self.type:
            outputs[self.argument] = _other(outputs.get(self.argument))
        return resource_id, outputs


def websocket_trigger(plan_mocks: PlanMocks, router_name: str = "router") -> str:
    """The deployment trigger of one WebSocketApi, built alone under `plan_mocks`."""

    def program() -> None:
        functions = {
            name: aws.lambda_.Alias(
                f"{name}-live",
                name="live",
                function_name=aws.lambda_.Function(
                    name,
                    name=router_name if name == "router" else name,
                    role="arn:aws:iam::123456789012:role/r",
                    runtime="python3.12",
                    handler="h.handler",
                    code=pulumi.AssetArchive({}),
                    publish=True,
                ).name,
                function_version="1",
            )
            for name in ("authorizer", "connect", "disconnect", "router")
        }
        WebSocketApi(
            "ws",
            WebSocketApiArgs(
                api_name="ws",
                authorizer=functions["authorizer"],
                routes={
                    CONNECT: functions["connect"],
                    DISCONNECT: functions["disconnect"],
                    DEFAULT: functions["router"],
                },
                stage_name="dev",
                throttle=Throttle(),
                log_retention_days=14,
                access_log_group_name="/ws/access",
            ),
        )

    planned = plan.run_program(
        program, project="streamer", stack="dev", preview=False, plan_mocks=plan_mocks
    )
    return planned.named("ws-deployment").inputs["triggers"]["routes"]


def test_the_trigger_covers_the_arguments_the_issue_names() -> None:
    # GIVEN the arguments read from the provider's SDK  WHEN they are listed
    arguments = set(routing_arguments())

    # THEN they include the ones a redeploy most often hinges on
    assert {
        ("aws:apigatewayv2/authorizer:Authorizer", "identitySources"),
        ("aws:apigatewayv2/authorizer:Authorizer", "authorizerUri"),
        ("aws:apigatewayv2/integration:Integration", "integrationUri"),
        ("aws:apigatewayv2/integration:Integration", "timeoutMilliseconds"),
        ("aws:apigatewayv2/route:Route", "routeKey"),
        ("aws:apigatewayv2/route:Route", "authorizationType"),
        ("aws:apigatewayv2/route:Route", "routeResponseSelectionExpression"),
        ("aws:apigatewayv2/routeResponse:RouteResponse", "modelSelectionExpression"),
    } <= arguments


def test_the_trigger_stays_when_nothing_changes() -> None:
    # GIVEN the same API built twice  WHEN both triggers are read  THEN they are equal,
    # so an unchanged `pulumi up` keeps the deployment
    assert websocket_trigger(ReportingMocks()) == websocket_trigger(ReportingMocks())


@pytest.mark.parametrize(("type_", "argument"), routing_arguments())
def test_any_routing_argument_change_makes_a_new_deployment(type_: str, argument: str) -> None:
    # GIVEN the API built once, and again with one argument of one kind of routing resource
    # reported differently (an in-place update keeps every resource id)
    before = websocket_trigger(ReportingMocks())

    # WHEN the second trigger is read
    after = websocket_trigger(ReportingMocks(type_, argument))

    # THEN it differs, so the deployment is replaced and the stage serves the change
    assert after != before


def test_a_different_function_behind_a_route_makes_a_new_deployment() -> None:
    # GIVEN the API built with the router function, and with another function on $default
    # WHEN both triggers are read  THEN they differ (its integration URI changed)
    assert websocket_trigger(ReportingMocks()) != websocket_trigger(
        ReportingMocks(), router_name="router-2"
    )
