"""CloudWatch alarms in one shape: above a threshold for five minutes, to the stack's targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws

PERIOD_S = 60
EVALUATION_PERIODS = 5


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
) -> aws.cloudwatch.MetricAlarm:
    """Alarm when `statistic` of the metric is above `threshold` in any minute of five.

    Missing data counts as fine: an idle function reports no errors and no throttles.
    The same targets hear when the alarm clears.
    """
    return aws.cloudwatch.MetricAlarm(
        name,
        namespace=namespace,
        metric_name=metric_name,
        dimensions=dict(dimensions),
        statistic=statistic,
        period=PERIOD_S,
        evaluation_periods=EVALUATION_PERIODS,
        datapoints_to_alarm=1,
        threshold=threshold,
        comparison_operator="GreaterThanThreshold",
        treat_missing_data="notBreaching",
        alarm_description=description,
        alarm_actions=list(alarm_actions),
        ok_actions=list(alarm_actions),
        opts=opts,
    )
