"""The resource graph: exactly the expected resources per region, on the right provider."""

from __future__ import annotations

from collections import Counter

import pytest

from components.plan import Plan

from .graph import PROJECT, regional_resources, type_counts
from .test_infra_http_api import RESOURCES

pytestmark = pytest.mark.infra

FUNCTIONS = 8

#: What one region holds, by type (alarms, components/service_alarms.py: an error rate
#: per function but the authorizer, which alarms on crashes, a throttle alarm per
#: function, async p99, stuck requests, the sweeper failing, the processor's dead letters
#: and iterator age, plus the notifications' undelivered messages; permissions: four
#: routes/authorizer, the sweeper, the poller, and SNS and EventBridge invoking the
#: publish function).
PER_REGION = Counter(
    {
        "pulumi:providers:aws": 1,
        "streamer:components:RegionalStack": 1,
        "streamer:components:StreamerFunction": FUNCTIONS,
        "streamer:components:WebSocketApi": 1,
        "streamer:components:ProcessorMapping": 1,
        "streamer:components:ConnectionsAccess": 1,
        "streamer:components:Notifications": 1,
        "streamer:components:ServiceAlarms": 1,
        "streamer:components:TenantInsights": 1,
        "aws:iam/role:Role": FUNCTIONS,
        # One more per function that posts to clients (ConnectionsAccess).
        "aws:iam/rolePolicy:RolePolicy": FUNCTIONS + 5,
        "aws:cloudwatch/logGroup:LogGroup": FUNCTIONS + 1,
        "aws:lambda/function:Function": FUNCTIONS,
        # Each function's `live` alias, which every trigger invokes.
        "aws:lambda/alias:Alias": FUNCTIONS,
        # The dependency layer, and the tracing layer (every stack file turns tracing on).
        "aws:lambda/layerVersion:LayerVersion": 2,
        "aws:cloudwatch/metricAlarm:MetricAlarm": 2 * (FUNCTIONS + 1) + 5 + 1,
        "aws:cloudwatch/compositeAlarm:CompositeAlarm": 1,
        # Three rules (tenants by requests, failures, duration), four saved queries.
        "aws:cloudwatch/contributorInsightRule:ContributorInsightRule": 3,
        "aws:cloudwatch/queryDefinition:QueryDefinition": 4,
        "aws:cloudwatch/dashboard:Dashboard": 1,
        # The authorizer's crash lines feed a metric of their own (components/alarms.py).
        "aws:cloudwatch/logMetricFilter:LogMetricFilter": 5,
        "aws:sns/topic:Topic": 2,
        "aws:sns/topicSubscription:TopicSubscription": 1,
        "aws:sqs/queue:Queue": 2,
        "aws:sqs/queuePolicy:QueuePolicy": 1,
        "aws:cloudwatch/eventBus:EventBus": 1,
        "aws:cloudwatch/eventArchive:EventArchive": 1,
        "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig": 1,
        "aws:apigatewayv2/api:Api": 1,
        "aws:apigatewayv2/authorizer:Authorizer": 1,
        "aws:apigatewayv2/integration:Integration": 3,
        "aws:apigatewayv2/route:Route": 3,
        "aws:apigatewayv2/routeResponse:RouteResponse": 1,
        "aws:apigatewayv2/deployment:Deployment": 1,
        "aws:apigatewayv2/stage:Stage": 1,
        "aws:lambda/permission:Permission": 8,
        "aws:lambda/eventSourceMapping:EventSourceMapping": 1,
        "aws:cloudwatch/eventRule:EventRule": 3,
        "aws:cloudwatch/eventTarget:EventTarget": 3,
    }
)
#: The HTTP API (components/http_api.py): its function and role, the API with its JWT
#: authorizer, two routes, one integration, the stage and its access logs, one permission.
HTTP_API = RESOURCES + Counter({"streamer:components:HttpApi": 1})
#: A canary or linear rollout (prod, staging): CodeDeploy's service role and its managed
#: policy, one Lambda application, and per function (the HTTP API's too) a deployment group
#: and the dynamic resource that starts its alias's shift (components/deployments.py).
GRADUAL_ROLLOUT = Counter(
    {
        "streamer:components:Deployments": 1,
        "aws:iam/role:Role": 1,
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment": 1,
        "aws:codedeploy/application:Application": 1,
        "aws:codedeploy/deploymentGroup:DeploymentGroup": FUNCTIONS + 1,
        "pulumi-python:dynamic/streamer:AliasDeployment": FUNCTIONS + 1,
    }
)
#: Each region reads its account bootstrap (API Gateway's CloudWatch role) through a stack
#: reference and creates no account-level resource (tests/infra/test_infra_bootstrap.py).
BOOTSTRAP_CHECK = Counter({"pulumi:pulumi:StackReference": 1})
TABLES = Counter({"streamer:components:Tables": 1, "aws:dynamodb/table:Table": 3})


@pytest.mark.parametrize(
    ("stack", "regions", "per_region"),
    [
        ("dev", ["us-east-1"], PER_REGION + HTTP_API + BOOTSTRAP_CHECK),
        (
            "prod",
            ["us-east-1", "eu-west-1"],
            PER_REGION + HTTP_API + BOOTSTRAP_CHECK + GRADUAL_ROLLOUT,
        ),
    ],
)
def test_each_region_has_exactly_the_expected_resources(
    request: pytest.FixtureRequest, stack: str, regions: list[str], per_region: Counter
) -> None:
    # GIVEN the program run for the stack
    plan: Plan = request.getfixturevalue(stack)

    # WHEN its resources are grouped by region
    by_region = {region: regional_resources(plan, region) for region in regions}
    tables = [plan.named(f"{PROJECT}-tables"), *plan.descendants(f"{PROJECT}-tables")]

    # THEN each region has exactly its set, the tables exist once, and nothing else exists
    for region, resources in by_region.items():
        assert type_counts(resources) == per_region, region
    assert type_counts(tables) == TABLES
    accounted = {r.name for group in [*by_region.values(), tables] for r in group}
    assert accounted == {r.name for r in plan.resources}
    assert len(plan.resources) == len(regions) * sum(per_region.values()) + sum(TABLES.values())


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_resource_uses_its_own_regions_provider(
    request: pytest.FixtureRequest, stack: str
) -> None:
    # GIVEN the program run for the stack
    plan: Plan = request.getfixturevalue(stack)

    # WHEN the regional resources are listed
    regions = [r.inputs["region"] for r in plan.of_type("pulumi:providers:aws")]

    # THEN every AWS resource of a region is created by that region's provider
    for region in regions:
        custom = [r for r in regional_resources(plan, region) if r.type.startswith("aws:")]
        assert {r.region for r in custom} == {region}
    # AND the tables by the first region's provider (replicas carry the others)
    assert {t.region for t in plan.of_type("aws:dynamodb/table:Table")} == {"us-east-1"}


def test_dev_exports_its_url_and_table_names(dev: Plan) -> None:
    # GIVEN the dev stack  WHEN its outputs are read
    outputs = dev.outputs

    # THEN there is one WebSocket URL, of its stage, and the three table names
    assert outputs["websocketUrls"] == {
        "us-east-1": dev.named(f"{PROJECT}-us-east-1-websocket-stage").outputs["invokeUrl"]
    }
    assert outputs["websocketUrls"]["us-east-1"].startswith("wss://")
    assert outputs["websocketUrls"]["us-east-1"].endswith("/dev")
    assert outputs["tableNames"] == {
        logical: dev.named(f"{PROJECT}-tables-{logical}").outputs["name"]
        for logical in ("connections", "requests", "subscriptions")
    }
    assert set(outputs["managementEndpoints"]) == {"us-east-1"}


def test_prod_exports_one_url_per_region(prod: Plan) -> None:
    # GIVEN the prod stack  WHEN its outputs are read
    urls = prod.outputs["websocketUrls"]

    # THEN each region has its own URL on its own regional endpoint
    assert set(urls) == {"us-east-1", "eu-west-1"}
    for region, url in urls.items():
        assert url.startswith("wss://") and f".execute-api.{region}.amazonaws.com/prod" in url
        assert prod.outputs["managementEndpoints"][region] == "https://" + url[len("wss://") :]
    assert set(prod.outputs["tableNames"]) == {"connections", "requests", "subscriptions"}
    assert set(prod.outputs["alarmActions"]) == {"us-east-1", "eu-west-1"}
