"""The alarms of one region, each one a symptom a user feels, and one that sums them up.

- a function's error rate (errors per 100 invocations, metric math) above a threshold;
  for the authorizer, whose refusals are Lambda errors, any crash line instead;
- a function throttled;
- async requests slow: p99 of their total time, queued to ended, above a threshold;
- requests stuck: the sweeper re-drives requests minute after minute;
- the sweeper failing: minute after minute it cannot handle some due requests (a re-drive
  or takeover refused, the per-user cap's queue unread), which then wait on; its Lambda
  errors do not show this, since a sweep that fails on some requests still returns;
- the processor's dead-letter queue holding stream batches it gave up on;
- the processor's stream mapping falling behind (iterator age);
- "service unhealthy", a composite alarm in ALARM while any of them is.

Thresholds and evaluation periods are `streamer:alarms` (`AlarmSettings`); the iterator
age's is `streamer:processor.iteratorAgeAlarmMs`. Each alarm's runbook is in
docs/operations.md, "Alarms", under the alarm's title.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.alarms import (
    REFUSES_BY_RAISING,
    RUNBOOK,
    Evaluation,
    crash_alarm,
    metric_alarm,
    ratio_alarm,
)
from components.observability import base_dimensions
from components.settings import StackSettings
from streamer import catalog
from streamer.metric_names import (
    ASYNC_TOTAL_DURATION,
    NAMESPACE,
    SWEEPER_FAILURES,
    SWEEPER_REDRIVES,
)


@dataclass
class ServiceAlarmsArgs:
    """The region's functions (by catalog name, with their log groups), its processor's
    dead-letter queue, and where alarms go."""

    prefix: str
    region: str
    settings: StackSettings
    function_names: Mapping[str, pulumi.Input[str]]
    log_group_names: Mapping[str, pulumi.Input[str]]
    dead_letter_queue_name: pulumi.Input[str]
    alarm_actions: Sequence[pulumi.Input[str]]


class ServiceAlarms(pulumi.ComponentResource):
    """Every alarm of one region, and the composite "service unhealthy" alarm over them."""

    #: Each alarm by its name in AWS.
    alarms: dict[str, aws.cloudwatch.MetricAlarm]
    unhealthy: aws.cloudwatch.CompositeAlarm

    def __init__(
        self, name: str, args: ServiceAlarmsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("streamer:components:ServiceAlarms", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings, actions = args.settings, list(args.alarm_actions)
        tuning = settings.alarms
        evaluation = Evaluation(tuning.evaluation_periods, tuning.datapoints_to_alarm)
        self.alarms = {}
        self._prefix = args.prefix

        def named(suffix: str) -> str:
            return f"{args.prefix}-{suffix}"

        for function, function_name in args.function_names.items():
            handler = catalog.FUNCTIONS[function].handler
            dimensions = {"FunctionName": function_name}
            if handler in REFUSES_BY_RAISING:
                alarm_name = named(f"{function}-crashes")
                self.alarms[alarm_name] = crash_alarm(
                    f"{name}-{function}",
                    alarm_name=alarm_name,
                    log_group_name=args.log_group_names[function],
                    handler=handler,
                    alarm_actions=actions,
                    opts=child,
                )
            else:
                alarm_name = named(f"{function}-error-rate")
                self.alarms[alarm_name] = ratio_alarm(
                    f"{name}-{function}-error-rate",
                    alarm_name=alarm_name,
                    namespace="AWS/Lambda",
                    dimensions=dimensions,
                    numerator="Errors",
                    denominator="Invocations",
                    minimum_denominator=tuning.min_invocations,
                    threshold_percent=tuning.error_rate_percent,
                    alarm_actions=actions,
                    description=f"{function}: more than {tuning.error_rate_percent} % of "
                    f"invocations failed. {RUNBOOK}, Error rate",
                    evaluation=evaluation,
                    opts=child,
                )
            alarm_name = named(f"{function}-throttles")
            self.alarms[alarm_name] = metric_alarm(
                f"{name}-{function}-throttles",
                alarm_name=alarm_name,
                namespace="AWS/Lambda",
                metric_name="Throttles",
                dimensions=dimensions,
                statistic="Sum",
                threshold=tuning.throttles,
                alarm_actions=actions,
                description=f"{function}: invocations throttled. {RUNBOOK}, Throttles",
                evaluation=evaluation,
                opts=child,
            )

        base = base_dimensions(settings.stage_name, args.region)
        processor = args.function_names[catalog.the_one(catalog.Trigger.REQUESTS_STREAM).name]
        for suffix, kwargs in {
            "async-p99": dict(
                namespace=NAMESPACE,
                metric_name=ASYNC_TOTAL_DURATION.name,
                dimensions=base,
                statistic="p99",
                threshold=tuning.total_duration_p99_ms,
                description="Async requests take too long from queued to ended (p99). "
                f"{RUNBOOK}, Async requests slow",
                evaluation=evaluation,
            ),
            "requests-stuck": dict(
                namespace=NAMESPACE,
                metric_name=SWEEPER_REDRIVES.name,
                dimensions=base,
                statistic="Sum",
                threshold=0,
                description="The sweeper re-drives requests minute after minute. "
                f"{RUNBOOK}, Requests stuck",
                evaluation=Evaluation(tuning.stuck_periods, tuning.stuck_periods),
            ),
            "sweeper-failing": dict(
                namespace=NAMESPACE,
                metric_name=SWEEPER_FAILURES.name,
                dimensions=base,
                statistic="Sum",
                threshold=0,
                description="The sweeper fails on due requests minute after minute: they "
                f"wait past their due time. {RUNBOOK}, Sweeper failing",
                evaluation=Evaluation(tuning.stuck_periods, tuning.stuck_periods),
            ),
            "dead-letters": dict(
                namespace="AWS/SQS",
                metric_name="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": args.dead_letter_queue_name},
                statistic="Maximum",
                threshold=tuning.dead_letters,
                description="Stream batches the processor gave up on are in its dead-letter "
                f"queue. {RUNBOOK}, Dead letters",
                evaluation=Evaluation(),
            ),
            "iterator-age": dict(
                namespace="AWS/Lambda",
                metric_name="IteratorAge",
                dimensions={"FunctionName": processor},
                statistic="Maximum",
                threshold=settings.processor.iterator_age_alarm_ms,
                description="Requests wait in the stream longer than they should. "
                f"{RUNBOOK}, Iterator age",
                evaluation=evaluation,
            ),
        }.items():
            alarm_name = named(suffix)
            self.alarms[alarm_name] = metric_alarm(
                f"{name}-{suffix}",
                alarm_name=alarm_name,
                alarm_actions=actions,
                opts=child,
                **kwargs,
            )

        self.unhealthy = aws.cloudwatch.CompositeAlarm(
            f"{name}-unhealthy",
            alarm_name=named("unhealthy"),
            alarm_rule=unhealthy_rule(self.alarms),
            alarm_description="Any of the region's alarms is firing: see which one on the "
            f"dashboard. {RUNBOOK}, Service unhealthy",
            alarm_actions=actions,
            ok_actions=actions,
            # The rule names its children: they must exist before it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.alarms.values())),
        )
        self.register_outputs({"unhealthy": self.unhealthy.arn})

    def rollback_alarms(self, function: str) -> list[str]:
        """The alarms whose firing rolls back a new version of `function` (components/
        rollout.py): its error rate (the authorizer: its crashes), async requests' p99 and
        the processor's dead letters, the symptoms a bad version shows first."""
        own = [f"{self._prefix}-{function}-{kind}" for kind in ("error-rate", "crashes")]
        shared = [f"{self._prefix}-{kind}" for kind in ("async-p99", "dead-letters")]
        return [name for name in (*own, *shared) if name in self.alarms]


def unhealthy_rule(alarm_names: Sequence[str] | Mapping[str, object]) -> str:
    """A composite alarm rule in ALARM while any of `alarm_names` is
    (AmazonCloudWatch/latest/APIReference/API_PutCompositeAlarm.html, AlarmRule)."""
    return " OR ".join(f'ALARM("{alarm_name}")' for alarm_name in sorted(alarm_names))
