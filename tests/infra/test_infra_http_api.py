"""The HTTP API: two routes behind the WebSocket's Lambda authorizer, CORS, its own function."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from components.functions import MULTI_REGION_VARIABLES
from components.plan import Plan
from streamer import config, entry

from .conftest import run_stack
from .graph import PROJECT, alias, environment, function, grants, table_arns, type_counts
from .test_infra_functions import COMMON, REQUEST_TUNING, TABLES

pytestmark = pytest.mark.infra

REGIONS = {"dev": ["us-east-1"], "prod": ["us-east-1", "eu-west-1"]}
#: Everything the component holds: the function (role, policy, logs) and the API; the
#: function's alarms are the region's (components/service_alarms.py).
RESOURCES = Counter(
    {
        "streamer:components:StreamerFunction": 1,
        "aws:iam/role:Role": 1,
        "aws:iam/rolePolicy:RolePolicy": 1,
        "aws:lambda/function:Function": 1,
        "aws:lambda/alias:Alias": 1,
        "aws:cloudwatch/logGroup:LogGroup": 2,
        "aws:apigatewayv2/api:Api": 1,
        "aws:apigatewayv2/authorizer:Authorizer": 1,
        "aws:apigatewayv2/integration:Integration": 1,
        "aws:apigatewayv2/route:Route": 2,
        "aws:apigatewayv2/stage:Stage": 1,
        "aws:lambda/permission:Permission": 2,
    }
)
#: The variables the HTTP function runs with: the router's (it runs the router, but
#: never ends a request with a lifecycle event) and the WebSocket URL. No token settings:
#: the authorizer verifies tokens.
ENVIRONMENT = (
    COMMON
    | TABLES
    | REQUEST_TUNING
    | {config.RATE_LIMIT_PER_S, config.RATE_LIMIT_BURST}
    | {config.MAX_ACTIVE_REQUESTS, config.WATCH_TOKEN_TTL_S}
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


def websocket_authorizer(plan: Plan, region: str):
    (found,) = [
        r
        for r in plan.descendants(f"{PROJECT}-{region}-websocket")
        if r.type == "aws:apigatewayv2/authorizer:Authorizer"
    ]
    return found


@pytest.mark.parametrize(("stack", "region"), stacks_and_regions())
def test_both_routes_use_the_websockets_authorizer_function_with_simple_responses(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's HTTP API
    plan: Plan = request.getfixturevalue(stack)
    (authorizer,) = of_type(plan, region, "aws:apigatewayv2/authorizer:Authorizer")
    (api,) = of_type(plan, region, "aws:apigatewayv2/api:Api")
    found = routes(plan, region)

    # THEN both routes use a REQUEST authorizer that invokes the very function the
    # WebSocket $connect authorizer invokes, in payload format 2.0 with simple
    # responses, keyed (and cached) by the Authorization header
    assert api.inputs["protocolType"] == "HTTP"
    assert set(found) == {"POST /requests", "GET /requests/{id}"}
    for route in found.values():
        assert route.inputs["authorizationType"] == "CUSTOM"
        assert route.inputs["authorizerId"] == authorizer.id
    assert authorizer.inputs["authorizerType"] == "REQUEST"
    assert (
        authorizer.inputs["authorizerUri"]
        == websocket_authorizer(plan, region).inputs["authorizerUri"]
    )
    assert (
        authorizer.inputs["authorizerUri"] == alias(plan, region, "authorizer").outputs["invokeArn"]
    )
    assert authorizer.inputs["authorizerPayloadFormatVersion"] == "2.0"
    assert authorizer.inputs["enableSimpleResponses"] is True
    assert authorizer.inputs["identitySources"] == ["$request.header.Authorization"]
    assert authorizer.inputs["authorizerResultTtlInSeconds"] == 30
    assert "jwtConfiguration" not in authorizer.inputs


@pytest.mark.parametrize(("stack", "region"), stacks_and_regions())
def test_api_gateway_may_invoke_the_authorizer_from_this_apis_authorizer_only(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    (authorizer,) = of_type(plan, region, "aws:apigatewayv2/authorizer:Authorizer")
    (api,) = of_type(plan, region, "aws:apigatewayv2/api:Api")
    [permission] = [
        p
        for p in of_type(plan, region, "aws:lambda/permission:Permission")
        if p.inputs["function"] == function(plan, region, "authorizer").outputs["name"]
    ]
    assert permission.inputs["action"] == "lambda:InvokeFunction"
    assert permission.inputs["principal"] == "apigateway.amazonaws.com"
    assert permission.inputs["sourceArn"] == (
        f"{api.outputs['executionArn']}/authorizers/{authorizer.id}"
    )


def test_without_allowed_origins_the_api_has_no_cors(prod: Plan) -> None:
    # The default: no origin is allowed, and certainly not "*".
    for region in REGIONS["prod"]:
        (api,) = of_type(prod, region, "aws:apigatewayv2/api:Api")
        assert "corsConfiguration" not in api.inputs


def test_cors_comes_from_the_stack_config(artifacts_dir: Path) -> None:
    # GIVEN dev allowing one origin
    origin = "https://app.example.com"
    plan = run_stack("dev", artifacts_dir, overrides={"cors": {"allowOrigins": [origin]}})

    # THEN the API answers CORS for that origin, the methods of its routes, and the
    # headers a browser's fetch with a bearer token and a JSON body sends
    (api,) = of_type(plan, "us-east-1", "aws:apigatewayv2/api:Api")
    assert api.inputs["corsConfiguration"] == {
        "allowOrigins": [origin],
        "allowMethods": ["GET", "POST", "OPTIONS"],
        "allowHeaders": ["authorization", "content-type"],
        "maxAge": 300,
    }


@pytest.mark.parametrize(
    "cors",
    [
        {"allowOrigins": ["https://app.example.com/path"]},
        {"allowOrigins": "https://app.example.com"},
        {"allowMethods": ["FETCH"]},
        {"allowOrigin": ["https://app.example.com"]},
    ],
)
def test_a_malformed_cors_setting_is_refused_naming_the_key(artifacts_dir: Path, cors) -> None:
    with pytest.raises(Exception, match="streamer:cors"):
        run_stack("dev", artifacts_dir, overrides={"cors": cors})


@pytest.mark.parametrize(("stack", "region"), stacks_and_regions())
def test_both_routes_reach_the_http_function_by_payload_format_2(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    (integration,) = of_type(plan, region, "aws:apigatewayv2/integration:Integration")
    (api,) = of_type(plan, region, "aws:apigatewayv2/api:Api")
    http = function(plan, region, "http")
    [permission] = [
        p
        for p in of_type(plan, region, "aws:lambda/permission:Permission")
        if p.inputs["function"] == http.outputs["name"]
    ]

    assert integration.inputs["integrationType"] == "AWS_PROXY"
    assert integration.inputs["payloadFormatVersion"] == "2.0"
    assert integration.inputs["integrationUri"] == alias(plan, region, "http").outputs["invokeArn"]
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
    assert set(env) <= set(config.ALL) | MULTI_REGION_VARIABLES


@pytest.mark.parametrize(("stack", "region"), stacks_and_regions())
def test_the_role_reaches_the_requests_table_and_the_circuit_breaker_only(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    log_group = plan.named(f"{PROJECT}-{region}-http-logs").outputs["arn"]
    # On the tables of every region of the stack: a request is written at its decider's
    # replica, wherever that is (issue 16).
    tables: set[tuple[str, str]] = set()
    for each in REGIONS[stack]:
        requests = table_arns(plan, each)["requests"]
        # The circuit breaker's items live in the connections table (streamer.store.circuits).
        connections = table_arns(plan, each)["connections"]
        tables |= {
            ("dynamodb:GetItem", requests),
            ("dynamodb:PutItem", requests),
            ("dynamodb:UpdateItem", requests),
            ("dynamodb:Query", f"{requests}/index/by_active_owner"),
            ("dynamodb:BatchGetItem", connections),
            ("dynamodb:UpdateItem", connections),
        }

    assert grants(plan, region, "http") == tables | {
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


@pytest.mark.parametrize(("stack", "region"), stacks_and_regions())
def test_the_http_url_is_an_https_url_and_the_websocket_url_a_wss_one(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN one region's HTTP API and WebSocket API
    plan: Plan = request.getfixturevalue(stack)
    (http_api,) = of_type(plan, region, "aws:apigatewayv2/api:Api")
    websocket = plan.named(f"{PROJECT}-{region}-websocket-api")

    # WHEN the URLs the stack exports are read
    http_url, websocket_url = (
        plan.outputs["httpUrls"][region],
        plan.outputs["websocketUrls"][region],
    )

    # THEN the HTTP API is called over https at its `$default` stage's root and the
    # WebSocket API over wss at its named stage, as API Gateway gives them (and a browser
    # fetches only the first)
    host = f"execute-api.{region}.amazonaws.com"
    assert http_url == f"https://{http_api.id}.{host}/"
    assert http_api.outputs["apiEndpoint"] == f"https://{http_api.id}.{host}"
    assert websocket_url == f"wss://{websocket.id}.{host}/{stack}"
    assert websocket.outputs["apiEndpoint"] == f"wss://{websocket.id}.{host}"


def test_with_a_pem_key_the_routes_keep_the_authorizer(artifacts_dir: Path) -> None:
    # GIVEN dev configured with a PEM public key (which a native JWT authorizer could not use)
    pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQY\n-----END PUBLIC KEY-----"
    plan = run_stack(
        "dev",
        artifacts_dir,
        overrides={"jwtJwksUrl": None, "jwtPublicKey": pem},
        secret_keys=("jwtPublicKey",),
    )

    # THEN both routes still go through the Lambda authorizer, which has the key (as a
    # secret); the HTTP function has no token settings at all
    found = routes(plan, "us-east-1")
    assert {r.inputs["authorizationType"] for r in found.values()} == {"CUSTOM"}
    assert config.JWT_PUBLIC_KEY in environment(plan, "us-east-1", "authorizer")
    assert config.JWT_PUBLIC_KEY not in environment(plan, "us-east-1", "http")
    assert "BEGIN PUBLIC KEY" not in plan.to_json()
