"""The HTTP API: two routes, the JWT authorizer on POST only, its own least-privilege function."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from components.plan import Plan
from streamer import config, entry

from .conftest import run_stack
from .graph import PROJECT, environment, function, grants, table_arns, type_counts
from .test_infra_functions import COMMON, REQUEST_TUNING, TABLES

pytestmark = pytest.mark.infra

REGIONS = {"dev": ["us-east-1"], "prod": ["us-east-1", "eu-west-1"]}
#: Everything the component holds: the function (role, policy, logs, two alarms) and the API.
RESOURCES = Counter(
    {
        "streamer:components:StreamerFunction": 1,
        "aws:iam/role:Role": 1,
        "aws:iam/rolePolicy:RolePolicy": 1,
        "aws:lambda/function:Function": 1,
        "aws:cloudwatch/logGroup:LogGroup": 2,
        "aws:cloudwatch/metricAlarm:MetricAlarm": 2,
        "aws:apigatewayv2/api:Api": 1,
        "aws:apigatewayv2/authorizer:Authorizer": 1,
        "aws:apigatewayv2/integration:Integration": 1,
        "aws:apigatewayv2/route:Route": 2,
        "aws:apigatewayv2/stage:Stage": 1,
        "aws:lambda/permission:Permission": 1,
    }
)
#: The variables the HTTP function runs with: the router's (it runs the router, but
#: never ends a request with a lifecycle event), the token settings, the WebSocket URL.
ENVIRONMENT = (
    COMMON
    | TABLES
    | REQUEST_TUNING
    | {config.RATE_LIMIT_PER_S, config.RATE_LIMIT_BURST}
    | {config.MAX_ACTIVE_REQUESTS, config.WATCH_TOKEN_TTL_S}
    | {config.JWT_ISSUER, config.JWT_AUDIENCE, config.JWT_JWKS_URL}
    | {config.WEBSOCKET_URL}
)


def stacks_and_regions() -> list[tuple[str, str]]:
    return [(stack, region) for stack, regions in REGIONS.items() for region in regions]


def component(plan: Plan, region: str) -> str:
    return f"{PROJECT}-{region}-http-api"


def of_type(plan: Plan, region: str, type_: str) -> list:
    return [r for r in plan.descendants(component(plan, region)) if r.type == type_]


def routes(plan: Plan, region: str) -> dict:
    found = of_type(plan, region, "aws:apigatewayv2/route:Route")
    return {r.inputs["routeKey"]: r for r in found}


@pytest.mark.parametrize(("stack", "region"), stacks_and_regions())
def test_the_component_holds_exactly_its_resources(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    assert type_counts(plan.descendants(component(plan, region))) == RESOURCES


@pytest.mark.parametrize(("stack", "region"), stacks_and_regions())
def test_the_jwt_authorizer_guards_post_and_nothing_else(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's HTTP API (the stacks trust a JWKS issuer)
    plan: Plan = request.getfixturevalue(stack)
    (authorizer,) = of_type(plan, region, "aws:apigatewayv2/authorizer:Authorizer")
    (api,) = of_type(plan, region, "aws:apigatewayv2/api:Api")
    found = routes(plan, region)

    # THEN POST /requests uses the native JWT authorizer with the stack's issuer and
    # audience; GET /requests/{id} has none (the function verifies user or watch tokens)
    assert api.inputs["protocolType"] == "HTTP"
    assert set(found) == {"POST /requests", "GET /requests/{id}"}
    assert found["POST /requests"].inputs["authorizationType"] == "JWT"
    assert found["POST /requests"].inputs["authorizerId"] == authorizer.id
    assert found["GET /requests/{id}"].inputs["authorizationType"] == "NONE"
    assert "authorizerId" not in found["GET /requests/{id}"].inputs
    assert authorizer.inputs["authorizerType"] == "JWT"
    assert authorizer.inputs["identitySources"] == ["$request.header.Authorization"]
    jwt = authorizer.inputs["jwtConfiguration"]
    expected_audience = "streamer-dev" if stack == "dev" else "streamer"
    assert jwt == {"issuer": "https://auth.example.com/", "audiences": [expected_audience]}


@pytest.mark.parametrize(("stack", "region"), stacks_and_regions())
def test_both_routes_reach_the_http_function_by_payload_format_2(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    (integration,) = of_type(plan, region, "aws:apigatewayv2/integration:Integration")
    (permission,) = of_type(plan, region, "aws:lambda/permission:Permission")
    (api,) = of_type(plan, region, "aws:apigatewayv2/api:Api")
    http = function(plan, region, "http")

    assert integration.inputs["integrationType"] == "AWS_PROXY"
    assert integration.inputs["payloadFormatVersion"] == "2.0"
    assert integration.inputs["integrationUri"] == http.outputs["invokeArn"]
    for route in routes(plan, region).values():
        assert route.inputs["target"] == f"integrations/{integration.id}"
    # Only this API may invoke the function, on its /requests paths.
    assert permission.inputs["function"] == http.outputs["name"]
    assert permission.inputs["principal"] == "apigateway.amazonaws.com"
    assert permission.inputs["sourceArn"] == f"{api.outputs['executionArn']}/*/*/requests*"
    assert http.inputs["handler"] == entry.HTTP
    assert http.inputs["timeout"] == 29


@pytest.mark.parametrize(("stack", "region"), stacks_and_regions())
def test_the_stage_auto_deploys_throttled_with_access_logs(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    (stage,) = of_type(plan, region, "aws:apigatewayv2/stage:Stage")
    (ws_stage,) = [
        r
        for r in plan.descendants(f"{PROJECT}-{region}-websocket")
        if r.type == "aws:apigatewayv2/stage:Stage"
    ]

    assert stage.inputs["name"] == "$default" and stage.inputs["autoDeploy"] is True
    limits = stage.inputs["defaultRouteSettings"]
    ws_limits = ws_stage.inputs["defaultRouteSettings"]
    assert limits["throttlingBurstLimit"] == ws_limits["throttlingBurstLimit"]
    assert limits["throttlingRateLimit"] == ws_limits["throttlingRateLimit"]
    log_format = json.loads(stage.inputs["accessLogSettings"]["format"])
    assert "$context.routeKey" in log_format.values()


@pytest.mark.parametrize(("stack", "region"), stacks_and_regions())
def test_the_function_gets_the_variables_the_runtime_reads(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    env = environment(plan, region, "http")
    assert set(env) == ENVIRONMENT
    assert set(env) <= set(config.ALL)


@pytest.mark.parametrize(("stack", "region"), stacks_and_regions())
def test_the_role_reaches_the_requests_table_only(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    requests = table_arns(plan, region)["requests"]
    log_group = plan.named(f"{PROJECT}-{region}-http-logs").outputs["arn"]

    assert grants(plan, region, "http") == {
        ("dynamodb:GetItem", requests),
        ("dynamodb:PutItem", requests),
        ("dynamodb:UpdateItem", requests),
        ("dynamodb:Query", f"{requests}/index/by_active_owner"),
        ("logs:CreateLogStream", f"{log_group}:*"),
        ("logs:PutLogEvents", f"{log_group}:*"),
        ("xray:PutTraceSegments", "*"),
        ("xray:PutTelemetryRecords", "*"),
    }


def test_the_http_url_of_every_region_is_exported(prod: Plan) -> None:
    assert prod.outputs["httpUrls"] == {
        region: prod.named(f"{component(prod, region)}-stage").outputs["invokeUrl"]
        for region in REGIONS["prod"]
    }


def test_with_a_pem_key_post_has_no_api_authorizer(artifacts_dir: Path) -> None:
    # GIVEN dev configured with a PEM public key, which the native JWT authorizer cannot use
    pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQY\n-----END PUBLIC KEY-----"
    plan = run_stack(
        "dev",
        artifacts_dir,
        overrides={"jwtJwksUrl": None, "jwtPublicKey": pem},
        secret_keys=("jwtPublicKey",),
    )

    # THEN there is no authorizer; both routes reach the function, which verifies
    # tokens with the key it gets (as a secret)
    assert of_type(plan, "us-east-1", "aws:apigatewayv2/authorizer:Authorizer") == []
    found = routes(plan, "us-east-1")
    assert {r.inputs["authorizationType"] for r in found.values()} == {"NONE"}
    assert config.JWT_PUBLIC_KEY in environment(plan, "us-east-1", "http")
    assert "BEGIN PUBLIC KEY" not in plan.to_json()
