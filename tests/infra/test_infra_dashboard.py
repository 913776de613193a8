"""The dashboard: one per region, generated from `streamer.metric_names`.

Its widgets name only metrics the code declares (with exactly their declared dimensions,
for this stage and region) or AWS service metrics of the region's own resources, show
every declared metric, and fit CloudWatch's dashboard body rules
(AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html: at most
500 widgets on a grid 24 wide, a widget 1-24 wide and 1-1000 high).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.observability import base_dimensions
from components.plan import Plan
from streamer.metric_names import BASE_DIMENSIONS, METRICS, NAMESPACE

from .graph import PROJECT, functions

pytestmark = pytest.mark.infra

REGIONS = [("dev", "us-east-1"), ("prod", "us-east-1"), ("prod", "eu-west-1")]
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
#: AWS service metrics the dashboard may show, by namespace, with the dimension they are by.
AWS_METRICS = {
    "AWS/Lambda": (
        {"Errors", "Throttles", "IteratorAge", "ConcurrentExecutions"},
        ("FunctionName",),
    ),
    "AWS/SQS": ({"ApproximateNumberOfMessagesVisible"}, ("QueueName",)),
    "AWS/DynamoDB": (
        {"ConsumedWriteCapacityUnits", "ConsumedReadCapacityUnits"},
        ("TableName",),
    ),
    "AWS/ApiGateway": (
        {"ClientError", "ExecutionError", "MessageCount", "ConnectCount"},
        ("ApiId", "Stage"),
    ),
}
SEARCH = re.compile(
    r"^SEARCH\('\{(?P<schema>[^}]+)\} MetricName=\"(?P<metric>\w+)\" (?P<filters>[^']*)', "
    r"'(?P<stat>[\w.]+)', 60\)$"
)


def dashboard(plan: Plan, region: str) -> dict[str, Any]:
    [found] = [d for d in plan.of_type(DASHBOARD) if d.region == region]
    assert found.inputs["dashboardName"] == f"{PROJECT}-{plan.stack}-{region}"
    return json.loads(found.inputs["dashboardBody"])


def graphs(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [w["properties"] for w in body["widgets"] if "metrics" in w["properties"]]


def region_resources(plan: Plan, region: str) -> dict[str, set[str]]:
    """Names and ids the region's widgets may point at, by the dimension that holds them."""
    tables = set()
    for table in plan.of_type("aws:dynamodb/table:Table"):
        tables.add(table.outputs["name"])
    return {
        "FunctionName": {f.outputs["name"] for f in functions(plan, region).values()},
        "QueueName": {
            q.outputs["name"] for q in plan.of_type("aws:sqs/queue:Queue") if q.region == region
        },
        "TableName": tables,
        "ApiId": {plan.named(f"{PROJECT}-{region}-websocket-api").id},
        "Stage": {plan.named(f"{PROJECT}-{region}-websocket-stage").inputs["name"]},
    }


def test_there_is_one_dashboard_per_region(dev: Plan, prod: Plan) -> None:
    assert [d.region for d in dev.of_type(DASHBOARD)] == ["us-east-1"]
    assert sorted(d.region for d in prod.of_type(DASHBOARD)) == ["eu-west-1", "us-east-1"]
    # Dashboards are global in an account (PutDashboard), so each region's has its own name.
    names = [d.inputs["dashboardName"] for d in prod.of_type(DASHBOARD)]
    assert len(set(names)) == 2


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_widgets_name_only_declared_metrics_and_the_regions_own_aws_metrics(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's dashboard and resources
    plan: Plan = request.getfixturevalue(stack)
    body = dashboard(plan, region)
    stage = plan.named(f"{PROJECT}-{region}-websocket-stage").inputs["name"]
    base = base_dimensions(stage, region)
    allowed = region_resources(plan, region)
    shown: set[str] = set()

    # WHEN every line of every graph is read
    for graph in graphs(body):
        assert graph["region"] == region
        ids = [line[0]["id"] for line in graph["metrics"] if isinstance(line[0], dict)]
        assert len(ids) == len(set(ids)), graph["title"]
        for line in graph["metrics"]:
            if isinstance(line[0], dict):
                # THEN a SEARCH names a declared metric by exactly its dimensions, here
                match = SEARCH.match(line[0]["expression"])
                assert match, line
                namespace, *keys = match["schema"].split(",")
                metric = METRICS[match["metric"]]
                assert namespace == NAMESPACE
                assert sorted(keys) == sorted((*BASE_DIMENSIONS, *metric.dimensions))
                assert metric.dimensions, "a metric without own dimensions is drawn directly"
                filters = dict(re.findall(r'(\w+)="([^"]*)"', match["filters"]))
                assert filters == base
                shown.add(metric.name)
                continue
            namespace, name, *rest = line
            options = rest.pop() if rest and isinstance(rest[-1], dict) else {}
            dimensions = dict(zip(rest[::2], rest[1::2], strict=True))
            if namespace == NAMESPACE:
                # THEN a Streamer metric has only the base dimensions, of this stage here
                assert METRICS[name].dimensions == ()
                assert dimensions == base
                shown.add(name)
            else:
                # THEN an AWS metric is one listed, on one of the region's own resources
                names, keys = AWS_METRICS[namespace]
                assert name in names, (namespace, name)
                assert tuple(dimensions) == keys, (namespace, name)
                for key, value in dimensions.items():
                    assert value in allowed[key], (name, key, value)
            assert set(options) <= {"stat", "label"}

    # AND every declared metric is on the dashboard
    assert shown == set(METRICS)


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_the_body_fits_cloudwatchs_rules(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    body = dashboard(plan, region)
    widgets = body["widgets"]

    assert 0 < len(widgets) <= 500
    cells: set[tuple[int, int]] = set()
    for widget in widgets:
        assert widget["type"] in ("metric", "text")
        assert 1 <= widget["width"] <= 24 and 1 <= widget["height"] <= 1000
        assert widget["x"] >= 0 and widget["x"] + widget["width"] <= 24
        covered = {
            (x, y)
            for x in range(widget["x"], widget["x"] + widget["width"])
            for y in range(widget["y"], widget["y"] + widget["height"])
        }
        # No two widgets overlap: the layout is what the console shows.
        assert not covered & cells, widget
        cells |= covered


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_the_per_tenant_widgets_show_the_regions_contributor_insights_rules(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    body = dashboard(plan, region)
    rules = {
        r.inputs["ruleName"]
        for r in plan.of_type("aws:cloudwatch/contributorInsightRule:ContributorInsightRule")
        if r.region == region
    }

    shown = [w["properties"] for w in body["widgets"] if "insightRule" in w["properties"]]
    assert {w["insightRule"]["ruleName"] for w in shown} == rules
    assert len(rules) == 3
    for widget in shown:
        assert widget["region"] == region
        assert widget["insightRule"]["maxContributorCount"] == 10


def test_sections_are_the_documented_ones(dev: Plan) -> None:
    body = dashboard(dev, "us-east-1")
    headings = [
        w["properties"]["markdown"].removeprefix("## ")
        for w in body["widgets"]
        if w["type"] == "text"
    ]
    assert headings == [
        "Golden signals",
        "Async pipeline",
        "Connections",
        "Throttles",
        "Cost drivers",
        "Per tenant (Contributor Insights, top 10)",
        "Circuit breaker",
    ]
