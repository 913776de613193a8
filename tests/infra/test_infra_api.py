"""The WebSocket API: authorizer on $connect only, two-way $default, scoped invoke rights."""

from __future__ import annotations

import json

import pytest

from components.api import deployment_trigger
from components.plan import Plan

from .graph import PROJECT, function

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
        == (function(plan, region, "authorizer").outputs["invokeArn"])
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

    # THEN each route proxies to its function, which only this API's stage may invoke
    for key, name in behind.items():
        slug = key.lstrip("$")
        route = plan.named(f"{PROJECT}-{region}-websocket-{slug}-route")
        integration = integrations[f"{PROJECT}-{region}-websocket-{slug}-integration"]
        target = function(plan, region, name)
        assert route.inputs["target"] == f"integrations/{integration.id}"
        assert integration.inputs["integrationType"] == "AWS_PROXY"
        assert integration.inputs["integrationUri"] == target.outputs["invokeArn"]
        permission = permissions[target.outputs["name"]]
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


def test_trigger_changes_exactly_when_routing_changes() -> None:
    # GIVEN the identities of a deployment's routing
    parts = ["auth-id", "$connect", "integration-1", "route-1", "arn:invoke-1"]

    # WHEN one of them changes, or none does
    changed = [*parts[:-1], "arn:invoke-2"]

    # THEN the trigger changes only in the first case
    assert deployment_trigger(parts) == deployment_trigger(list(parts))
    assert deployment_trigger(parts) != deployment_trigger(changed)
