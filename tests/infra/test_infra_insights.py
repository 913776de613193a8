"""Per-tenant views: Contributor Insights rules and saved Logs Insights queries.

The rules must be what CloudWatch accepts (AmazonCloudWatch/latest/monitoring/
ContributorInsights-RuleSyntax.html): the CloudWatchLogRule schema, JSON logs, at most
four keys and four filters each with one documented operator, `ValueOf` only with
`AggregateOn: Sum`, and a body of at most 8192 ASCII characters (API_InsightRule). They
and the queries read only the log groups of the stack's own functions in their region.
"""

from __future__ import annotations

import json

import pytest

from components.insights import LOG_FIELDS
from components.plan import Plan

from .graph import PROJECT

pytestmark = pytest.mark.infra

REGIONS = [("dev", "us-east-1"), ("prod", "us-east-1"), ("prod", "eu-west-1")]
RULE = "aws:cloudwatch/contributorInsightRule:ContributorInsightRule"
QUERY = "aws:cloudwatch/queryDefinition:QueryDefinition"
RULE_KEYS = {"Schema", "LogGroupNames", "LogFormat", "Contribution", "AggregateOn"}
OPERATORS = {
    "In": list,
    "NotIn": list,
    "StartsWith": list,
    "GreaterThan": (int, float),
    "LessThan": (int, float),
    "EqualTo": (int, float),
    "NotEqualTo": (int, float),
    "IsPresent": bool,
}


def function_log_groups(plan: Plan, region: str) -> set[str]:
    """The log groups of the region's functions (each StreamerFunction's `-logs`)."""
    return {
        group.outputs["name"]
        for group in plan.of_type("aws:cloudwatch/logGroup:LogGroup")
        if group.region == region and group.parent and group.name == f"{group.parent}-logs"
    }


def log_field(path: str) -> str:
    assert path.startswith("$."), path
    return path.removeprefix("$.")


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_rules_are_valid_contributor_insights_rules_over_the_functions_logs(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's rules and its functions' log groups
    plan: Plan = request.getfixturevalue(stack)
    rules = [r for r in plan.of_type(RULE) if r.region == region]
    groups = function_log_groups(plan, region)
    assert len(groups) == 9

    assert sorted(r.inputs["ruleName"] for r in rules) == [
        f"{PROJECT}-{stack}-tenants-by-{what}" for what in ("duration", "failures", "requests")
    ]
    for rule in rules:
        # WHEN its body is parsed
        text = rule.inputs["ruleDefinition"]
        body = json.loads(text)

        # THEN it has exactly the documented keys and values
        assert text.isascii() and len(text) <= 8192
        assert len(rule.inputs["ruleName"]) <= 128
        assert rule.inputs["ruleState"] == "ENABLED"
        assert set(body) == RULE_KEYS
        assert body["Schema"] == {"Name": "CloudWatchLogRule", "Version": 1}
        assert body["LogFormat"] == "JSON"
        assert set(body["LogGroupNames"]) == groups
        contribution = body["Contribution"]
        assert set(contribution) <= {"Keys", "ValueOf", "Filters"}
        assert 1 <= len(contribution["Keys"]) <= 4
        assert [log_field(k) for k in contribution["Keys"]] == ["tenant_id"]
        assert body["AggregateOn"] in ("Count", "Sum")
        assert ("ValueOf" in contribution) == (body["AggregateOn"] == "Sum")
        if "ValueOf" in contribution:
            assert log_field(contribution["ValueOf"]) == "duration_ms"
        assert len(contribution.get("Filters", [])) <= 4
        for condition in contribution.get("Filters", []):
            [operator] = set(condition) - {"Match"}
            assert isinstance(condition[operator], OPERATORS[operator])
            if isinstance(condition[operator], list):
                assert 1 <= len(condition[operator]) <= 10
            # AND it reads only the log fields Streamer writes
            assert log_field(condition["Match"]) in LOG_FIELDS


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_saved_queries_cover_the_common_investigations_over_the_functions_logs(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's saved queries
    plan: Plan = request.getfixturevalue(stack)
    queries = {
        q.inputs["name"].removeprefix(f"{PROJECT}-{stack}/"): q.inputs
        for q in plan.of_type(QUERY)
        if q.region == region
    }
    groups = function_log_groups(plan, region)

    # THEN there is one per investigation, each over every function's log group
    assert set(queries) == {
        "request-story",
        "tenant-failures",
        "slowest-requests",
        "errors-by-correlation-id",
    }
    for query in queries.values():
        assert set(query["logGroupNames"]) == groups
    # AND each filters on the field its investigation starts from
    assert 'filter request_id = "<request id>"' in queries["request-story"]["queryString"]
    assert 'filter tenant_id = "<tenant id>"' in queries["tenant-failures"]["queryString"]
    assert "sort duration_ms desc" in queries["slowest-requests"]["queryString"]
    assert (
        'filter correlation_id = "<correlation id>"'
        in queries["errors-by-correlation-id"]["queryString"]
    )
