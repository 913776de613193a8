"""Alarms: a refused token pages nobody, a crash of the authorizer does.

The authorizer raises to refuse a WebSocket handshake (API Gateway's 401), and Lambda
counts every raise in `Errors`; so its alarm watches a metric only crashes feed (log
metric filters), while every other function keeps its `Errors > 0` alarm.
"""

from __future__ import annotations

import pytest

from components.alarms import CRASH_LOG_TERMS, CRASH_NAMESPACE, crash_filter_pattern
from components.plan import Plan

from .graph import PROJECT, function, functions

pytestmark = pytest.mark.infra

REGION = "us-east-1"


def alarms(plan: Plan) -> dict[str, object]:
    return {r.name: r for r in plan.resources if r.type == "aws:cloudwatch/metricAlarm:MetricAlarm"}


def test_the_authorizer_alarms_on_crashes_not_on_lambda_errors(dev: Plan) -> None:
    # GIVEN the dev stack's authorizer and its log group
    found = alarms(dev)
    name = f"{PROJECT}-{REGION}-authorizer"
    log_group = dev.named(f"{name}-logs").outputs["name"]

    # THEN it has no Errors alarm, but a crash alarm on the crash metric of its log group,
    # above zero in any minute, to the region's alarm targets; throttles still alarm
    assert f"{name}-errors" not in found
    crashes = found[f"{name}-crashes"]
    assert crashes.inputs["namespace"] == CRASH_NAMESPACE
    assert crashes.inputs["metricName"] == log_group
    assert crashes.inputs["statistic"] == "Sum"
    assert crashes.inputs["threshold"] == 0
    assert crashes.inputs["comparisonOperator"] == "GreaterThanThreshold"
    assert crashes.inputs["alarmActions"] == found[f"{name}-throttles"].inputs["alarmActions"]
    assert crashes.inputs["alarmActions"]
    assert found[f"{name}-throttles"].inputs["metricName"] == "Throttles"


def test_the_crash_metric_is_fed_by_one_filter_per_crash_line_of_the_authorizers_logs(
    dev: Plan,
) -> None:
    name = f"{PROJECT}-{REGION}-authorizer"
    log_group = dev.named(f"{name}-logs").outputs["name"]
    filters = [
        r for r in dev.resources if r.type == "aws:cloudwatch/logMetricFilter:LogMetricFilter"
    ]

    # THEN every filter reads the authorizer's log group into its crash metric, one per term
    assert sorted(f.inputs["pattern"] for f in filters) == sorted(
        crash_filter_pattern(term) for term in CRASH_LOG_TERMS
    )
    for metric_filter in filters:
        assert metric_filter.inputs["logGroupName"] == log_group
        assert metric_filter.inputs["metricTransformation"] == {
            "namespace": CRASH_NAMESPACE,
            "name": log_group,
            "value": "1",
        }


def test_every_other_function_keeps_its_errors_alarm(dev: Plan) -> None:
    found = alarms(dev)
    names = set(functions(dev, REGION)) - {"authorizer"}
    assert names >= {"router", "processor", "http", "publish"}
    for name in names:
        errors = found[f"{PROJECT}-{REGION}-{name}-errors"]
        assert errors.inputs["namespace"] == "AWS/Lambda"
        assert errors.inputs["metricName"] == "Errors"
        assert errors.inputs["dimensions"] == {
            "FunctionName": function(dev, REGION, name).outputs["name"]
        }
