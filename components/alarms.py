"""CloudWatch alarms in one shape: above a threshold for five minutes, to the stack's targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from streamer import entry
from streamer.entry.authorizer import CRASH_MESSAGE

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


def function_alarms(
    name: str,
    *,
    function_name: pulumi.Input[str],
    log_group_name: pulumi.Input[str],
    handler: str,
    alarm_actions: Sequence[pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
) -> list[aws.cloudwatch.MetricAlarm]:
    """A function's alarms: throttles, and errors (or, for one that raises to refuse, crashes)."""
    dimensions = {"FunctionName": function_name}
    alarms = [
        metric_alarm(
            f"{name}-throttles",
            namespace="AWS/Lambda",
            metric_name="Throttles",
            dimensions=dimensions,
            statistic="Sum",
            threshold=0,
            alarm_actions=alarm_actions,
            description=f"{handler}: throttles in the last 5 minutes",
            opts=opts,
        )
    ]
    if handler not in REFUSES_BY_RAISING:
        alarms.append(
            metric_alarm(
                f"{name}-errors",
                namespace="AWS/Lambda",
                metric_name="Errors",
                dimensions=dimensions,
                statistic="Sum",
                threshold=0,
                alarm_actions=alarm_actions,
                description=f"{handler}: errors in the last 5 minutes",
                opts=opts,
            )
        )
        return alarms
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
    alarms.append(
        metric_alarm(
            f"{name}-crashes",
            namespace=CRASH_NAMESPACE,
            metric_name=log_group_name,
            dimensions={},
            statistic="Sum",
            threshold=0,
            alarm_actions=alarm_actions,
            description=f"{handler}: crashes in the last 5 minutes (refusals are not counted)",
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=filters)),
        )
    )
    return alarms
