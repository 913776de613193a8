"""Notifications from other systems, and lifecycle events for them, in one region.

- The publish function (`streamer.entry.publish`) with its own role: it reads topic
  subscriptions and users' connections, keeps each topic's last message, and posts
  to clients.
- An SNS topic subscribed to it (the image-pipeline recipe: a pipeline publishes
  `{tenant_id, topic, event, data}` as the message).
- A custom EventBridge bus with an archive (replay), and a rule sending its
  `Real-time Notification` events to the function, with a retry policy and a
  dead-letter queue.
- The same bus receives the lifecycle events (`Request Completed`, ...) that the
  router, processor, sweeper and poller put on it: they get its name and `events:PutEvents`
  on it only. With the stack's `lifecycleEvents` off they get neither, and publish none
  (the runtime publishes only with `STREAMER_EVENT_BUS` set); the bus stays, for the
  notifications other systems put on it.

Both sources invoke the function asynchronously: Lambda retries a failed invocation
twice, then sends it to the dead-letter queue (the function's on-failure
destination). Deliveries SNS or EventBridge cannot make at all go to the same queue,
whose depth alarms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components import policies
from components.alarms import metric_alarm
from components.context import RegionalContext
from components.functions import StreamerFunction, function_args
from streamer import catalog, config
from streamer.config import NOTIFICATION_DETAIL_TYPE

#: The functions that put lifecycle events on the bus (where requests end).
LIFECYCLE_PUBLISHERS = tuple(f.name for f in catalog.FUNCTIONS.values() if f.puts_lifecycle_events)
PUT_EVENTS = "events:PutEvents"
#: Retries of a failed asynchronous invocation before the dead-letter queue.
INVOKE_RETRIES = 2
#: How long EventBridge keeps trying to invoke the function, and how often.
RULE_RETRY_ATTEMPTS = 8
RULE_MAX_EVENT_AGE_S = 3600
ARCHIVE_RETENTION_DAYS = 7
TOPIC_RETENTION_S = 24 * 3600
DEAD_LETTER_RETENTION_S = 14 * 24 * 3600


@dataclass
class NotificationsArgs:
    """Names, the stack's settings and tables, and the code the publish function runs."""

    function_name: str
    region: RegionalContext


class Notifications(pulumi.ComponentResource):
    """The bus, its archive and rule, the SNS topic, the publish function and its DLQ."""

    bus_name: pulumi.Output[str]
    bus_arn: pulumi.Output[str]
    topic_arn: pulumi.Output[str]
    publish: StreamerFunction
    #: Whether the lifecycle publishers get the bus (the stack's `lifecycleEvents`).
    lifecycle_events: bool

    def __init__(
        self, name: str, args: NotificationsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("streamer:components:Notifications", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        bus = aws.cloudwatch.EventBus(
            f"{name}-bus", name=f"{args.region.prefix}-events", opts=child
        )
        aws.cloudwatch.EventArchive(
            f"{name}-archive",
            name=f"{args.region.prefix}-events",
            event_source_arn=bus.arn,
            retention_days=ARCHIVE_RETENTION_DAYS,
            description="Every event of the bus, for replay",
            opts=child,
        )
        dead_letters = aws.sqs.Queue(
            f"{name}-dead-letters",
            message_retention_seconds=DEAD_LETTER_RETENTION_S,
            # SSE-SQS unless the stack has its own key (the two are exclusive).
            sqs_managed_sse_enabled=args.region.kms_key_arn is None,
            kms_master_key_id=args.region.kms_key_arn,
            opts=child,
        )
        topic = aws.sns.Topic(
            f"{name}-topic",
            name=f"{args.region.prefix}-notifications",
            kms_master_key_id=args.region.kms_key_arn,
            opts=child,
        )
        rule = aws.cloudwatch.EventRule(
            f"{name}-rule",
            event_bus_name=bus.name,
            description="Real-time notifications to topics and users",
            event_pattern=json.dumps({"detail-type": [NOTIFICATION_DETAIL_TYPE]}),
            opts=child,
        )

        self.publish = StreamerFunction(
            args.function_name,
            function_args(
                "publish",
                args.region,
                resources={config.TOPIC_RETENTION_S: str(TOPIC_RETENTION_S)},
                statements=[policies.statement(("sqs:SendMessage",), [dead_letters.arn])],
            ),
            opts=child,
        )
        # Every trigger invokes the `live` alias, and the invoke configuration is the
        # alias's: asynchronous settings are per qualifier (API_PutFunctionEventInvokeConfig).
        function = self.publish.alias

        aws.lambda_.FunctionEventInvokeConfig(
            f"{name}-invoke-config",
            function_name=function.function_name,
            qualifier=function.name,
            maximum_retry_attempts=INVOKE_RETRIES,
            destination_config=aws.lambda_.FunctionEventInvokeConfigDestinationConfigArgs(
                on_failure=aws.lambda_.FunctionEventInvokeConfigDestinationConfigOnFailureArgs(
                    destination=dead_letters.arn
                )
            ),
            opts=child,
        )
        aws.sns.TopicSubscription(
            f"{name}-subscription",
            topic=topic.arn,
            protocol="lambda",
            endpoint=function.arn,
            redrive_policy=pulumi.Output.json_dumps({"deadLetterTargetArn": dead_letters.arn}),
            opts=child,
        )
        aws.cloudwatch.EventTarget(
            f"{name}-target",
            rule=rule.name,
            event_bus_name=bus.name,
            arn=function.arn,
            retry_policy=aws.cloudwatch.EventTargetRetryPolicyArgs(
                maximum_event_age_in_seconds=RULE_MAX_EVENT_AGE_S,
                maximum_retry_attempts=RULE_RETRY_ATTEMPTS,
            ),
            dead_letter_config=aws.cloudwatch.EventTargetDeadLetterConfigArgs(arn=dead_letters.arn),
            opts=child,
        )
        for source, principal, source_arn in (
            ("sns", "sns.amazonaws.com", topic.arn),
            ("events", "events.amazonaws.com", rule.arn),
        ):
            aws.lambda_.Permission(
                f"{name}-{source}-invoke",
                action="lambda:InvokeFunction",
                function=function.function_name,
                qualifier=function.name,
                principal=principal,
                source_arn=source_arn,
                opts=child,
            )
        aws.sqs.QueuePolicy(
            f"{name}-dead-letters-policy",
            queue_url=dead_letters.url,
            policy=policies.document(
                [
                    {
                        **policies.statement(("sqs:SendMessage",), [dead_letters.arn]),
                        "Principal": {"Service": principal},
                        "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}},
                    }
                    for principal, source_arn in (
                        ("sns.amazonaws.com", topic.arn),
                        ("events.amazonaws.com", rule.arn),
                    )
                ]
            ),
            opts=child,
        )
        metric_alarm(
            f"{name}-undelivered",
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": dead_letters.name},
            statistic="Maximum",
            threshold=0,
            alarm_actions=args.region.alarm_actions,
            description="Notifications that were not delivered: inspect the dead-letter queue",
            opts=child,
        )

        self.lifecycle_events = args.region.settings.lifecycle_events
        self.bus_name = bus.name
        self.bus_arn = bus.arn
        self.topic_arn = topic.arn
        self.register_outputs({"bus_name": bus.name, "bus_arn": bus.arn, "topic_arn": topic.arn})

    def publishes_lifecycle_events(self, function: str) -> bool:
        """Whether `function` puts lifecycle events on the bus."""
        return self.lifecycle_events and function in LIFECYCLE_PUBLISHERS

    def environment(self, function: str) -> Mapping[str, pulumi.Input[str]]:
        """What `function` needs to publish lifecycle events (nothing for the others)."""
        if not self.publishes_lifecycle_events(function):
            return {}
        return {config.EVENT_BUS: self.bus_name}

    def statements(self, function: str) -> list[dict[str, Any]]:
        """`events:PutEvents` on this bus only, for the lifecycle publishers."""
        if not self.publishes_lifecycle_events(function):
            return []
        return [policies.statement((PUT_EVENTS,), [self.bus_arn])]
