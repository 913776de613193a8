"""Per-tenant views: Contributor Insights rules and saved Logs Insights queries.

The rules must be what CloudWatch accepts (AmazonCloudWatch/latest/monitoring/
ContributorInsights-RuleSyntax.html): the CloudWatchLogRule schema, JSON logs, at most
four keys and four filters each with one documented operator, `ValueOf` only with
`AggregateOn: Sum`, and a body of at most 8192 ASCII characters (API_InsightRule). They
and the queries read only the log groups of the stack's own functions in their region.
"""

from __future__ import annotations

import json
import logging

import pytest

from components.insights import (
    ACTION,
    CONTRIBUTIONS,
    CORRELATION,
    DURATION,
    LEVEL,
    LOG_FIELDS,
    MESSAGE,
    REQUEST,
)
from components.plan import Plan
from tests.functional.helpers import Client, Stream

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


class _Lines(logging.Handler):
    """The runtime's log lines, formatted by the formatter its own handler uses."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


def matches(contribution: dict, line: dict) -> bool:
    """Whether a rule's filters select `line` (only the operators the rules use)."""
    for condition in contribution.get("Filters", []):
        value = line.get(log_field(condition["Match"]))
        if "IsPresent" in condition and (value is not None) != condition["IsPresent"]:
            return False
        if "In" in condition and value not in condition["In"]:
            return False
    return True


def test_the_runtimes_log_lines_carry_what_the_rules_count(test_app, management) -> None:
    # GIVEN a tenant's client whose sync message is answered and whose async request's
    # handler raises, with the runtime's log lines collected as its own handler formats them
    client = Client("conn-insights", tenant="tenant-7")
    client.connect()
    logger = logging.getLogger("streamer")
    [formatter] = {
        h.formatter
        for h in logger.handlers
        if type(h.formatter).__module__.startswith("streamer.")  # not pytest's own
    }
    lines = _Lines(formatter)
    logger.addHandler(lines)
    try:
        # WHEN it sends an echo and an action that fails, and the processor runs it
        client.send({"action": "echo", "id": "s-1", "payload": {"text": "hi"}})
        ack = client.send({"action": "explode", "id": "a-1", "payload": {}})
        Stream().run()
    finally:
        logger.removeHandler(lines)
    assert ack["type"] == "acknowledgment"

    # THEN each rule counts the tenant's lines: requests and time from lines with a
    # duration, failures from the handler's error line
    tenant = [line for line in lines.lines if line.get("tenant_id") == "tenant-7"]
    for key, contribution in CONTRIBUTIONS.items():
        counted = [line for line in tenant if matches(contribution["Contribution"], line)]
        assert counted, key
        if "ValueOf" in contribution["Contribution"]:
            assert all(isinstance(line[DURATION], int) for line in counted)
    # AND the request's story and its error are found by the fields the queries filter on
    story = [line for line in tenant if line.get(REQUEST) == "a-1"]
    assert {line[MESSAGE] for line in story} >= {"request queued", "handler raised"}
    [error] = [line for line in story if line[LEVEL] == "ERROR"]
    assert error[CORRELATION] and error[ACTION] == "explode"
