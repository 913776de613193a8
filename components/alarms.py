"""CloudWatch alarms in one shape: a threshold over one-minute periods, to the stack's targets.

Every alarm notifies its targets when it fires and again when it clears (OK actions), and
treats missing data as fine: an idle function reports no errors, no throttles and no
invocations. The authorizer's crash metric comes from log metric filters, because its
refusals are Lambda errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from streamer import entry
from streamer.entry.authorizer import CRASH_MESSAGE

PERIOD_S = 60
EVALUATION_PERIODS = 5
#: Where each alarm's runbook is: docs/operations.md, section "Alarms", then its title.
RUNBOOK = "Runbook: docs/operations.md, Alarms"


@dataclass(frozen=True)
class Evaluation:
    """How many of the last `periods` one-minute periods must breach to alarm."""

    periods: int = EVALUATION_PERIODS
    datapoints: int = 1


def metric_alarm(
    name: str,
    *,
    namespace: str,
    metric_name: str,
    dimensions: Mapping[str, pulumi.Input[str]],
    statistic: str,
    threshold: float,
    alarm_actions: Sequence[pulumi.Input[str]],
    description: str,
    opts: pulumi.ResourceOptions,
    alarm_name: str | None = None,
    evaluation: Evaluation = Evaluation(),
) -> aws.cloudwatch.MetricAlarm:
    """Alarm when `statistic` of the metric is above `threshold` in `evaluation`'s minutes.

    `statistic` is a CloudWatch statistic (`Sum`, `Maximum`, ...) or a percentile (`p99`),
    which CloudWatch takes as the extended statistic. `alarm_name` fixes the name AWS
    sees (the composite alarm names its children); None lets Pulumi choose one.
    """
    percentile = statistic.startswith("p")
    return aws.cloudwatch.MetricAlarm(
        name,
        name=alarm_name,
        namespace=namespace,
        metric_name=metric_name,
        dimensions=dict(dimensions),
        statistic=None if percentile else statistic,
        extended_statistic=statistic if percentile else None,
        period=PERIOD_S,
        **_evaluated(evaluation, threshold, alarm_actions, description),
        opts=opts,
    )


def ratio_alarm(
    name: str,
    *,
    alarm_name: str,
    namespace: str,
    dimensions: Mapping[str, pulumi.Input[str]],
    numerator: str,
    denominator: str,
    minimum_denominator: int,
    threshold_percent: float,
    alarm_actions: Sequence[pulumi.Input[str]],
    description: str,
    evaluation: Evaluation,
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.MetricAlarm:
    """Alarm when `numerator` is above `threshold_percent` of `denominator` (sums per minute).

    Metric math (AmazonCloudWatch/latest/monitoring/using-metric-math.html): `FILL` makes a
    minute without errors count as 0, and `IF` makes a minute with fewer than
    `minimum_denominator` invocations count as 0 rather than 100 % of one call.
    """

    def summed(metric_id: str, metric_name: str) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
        return aws.cloudwatch.MetricAlarmMetricQueryArgs(
            id=metric_id,
            metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
                namespace=namespace,
                metric_name=metric_name,
                dimensions=dict(dimensions),
                stat="Sum",
                period=PERIOD_S,
            ),
            return_data=False,
        )

    expression = (
        f"IF(d >= {minimum_denominator}, 100 * FILL(n, 0) / d, 0)"
        if minimum_denominator > 0
        else "IF(d > 0, 100 * FILL(n, 0) / d, 0)"
    )
    return aws.cloudwatch.MetricAlarm(
        name,
        name=alarm_name,
        metric_queries=[
            summed("n", numerator),
            summed("d", denominator),
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="rate",
                expression=expression,
                label=f"{numerator} per 100 {denominator}",
                return_data=True,
            ),
        ],
        **_evaluated(evaluation, threshold_percent, alarm_actions, description),
        opts=opts,
    )


def _evaluated(
    evaluation: Evaluation,
    threshold: float,
    alarm_actions: Sequence[pulumi.Input[str]],
    description: str,
) -> dict[str, object]:
    return {
        "evaluation_periods": evaluation.periods,
        "datapoints_to_alarm": evaluation.datapoints,
        "threshold": threshold,
        "comparison_operator": "GreaterThanThreshold",
        "treat_missing_data": "notBreaching",
        "alarm_description": description,
        "alarm_actions": list(alarm_actions),
        "ok_actions": list(alarm_actions),
    }


#: Functions whose refusals are Lambda errors: the authorizer raises `Exception("Unauthorized")`
#: to answer a WebSocket handshake 401, and Lambda counts every raise in `Errors`
#: (lambda/latest/dg/monitoring-metrics-types.html; the paging problem is
#: awslabs/aws-apigateway-lambda-authorizer-blueprints issue 21). Their crash alarm
#: counts log lines that only crashes write instead.
REFUSES_BY_RAISING = frozenset({entry.AUTHORIZER})
#: Log lines of a crash, each matched as a quoted term by its own metric filter: the
#: handler's own line, and the Lambda runtime's lines for failures the handler never
#: sees (a timeout; the runtime killed, e.g. out of memory; older runtimes' wording for
#: it; the module failing to import at init).
CRASH_LOG_TERMS = (
    CRASH_MESSAGE,
    "Task timed out",
    "Runtime exited",
    "Process exited before completing request",
    "Runtime.ImportModuleError",
)
CRASH_NAMESPACE = "Streamer/Crashes"


def crash_filter_pattern(term: str) -> str:
    """A CloudWatch Logs filter pattern matching events that contain `term` exactly."""
    return f'"{term}"'


def crash_alarm(
    name: str,
    *,
    alarm_name: str,
    log_group_name: pulumi.Input[str],
    handler: str,
    alarm_actions: Sequence[pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.MetricAlarm:
    """Alarm on any crash line in a function's log group, fed by one metric filter per line."""
    filters = [
        aws.cloudwatch.LogMetricFilter(
            f"{name}-crash-filter-{index}",
            log_group_name=log_group_name,
            pattern=crash_filter_pattern(term),
            metric_transformation=aws.cloudwatch.LogMetricFilterMetricTransformationArgs(
                namespace=CRASH_NAMESPACE, name=log_group_name, value="1"
            ),
            opts=opts,
        )
        for index, term in enumerate(CRASH_LOG_TERMS)
    ]
    return metric_alarm(
        f"{name}-crashes",
        alarm_name=alarm_name,
        namespace=CRASH_NAMESPACE,
        metric_name=log_group_name,
        dimensions={},
        statistic="Sum",
        threshold=0,
        alarm_actions=alarm_actions,
        description=f"{handler}: crashes in the last 5 minutes (refusals are not counted). "
        f"{RUNBOOK}, Authorizer crashes",
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=filters)),
    )
