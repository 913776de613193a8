"""Everything Streamer runs in one region, on that region's provider.

The dependency layer (and the tracing layer when the stack traces), seven functions with
their roles, the WebSocket API (with access logs, a check that the account's bootstrap
for the region is there), the processor's mapping on this region's replica stream
with its dead-letter queue, the sweeper's and the poller's one-minute schedules, and an
alarm topic unless targets are configured.
Posting to clients (`execute-api:ManageConnections`) is granted afterwards by
`ConnectionsAccess`, because it names every region's API.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import policies
from components.api import (
    CONNECT,
    DEFAULT,
    DISCONNECT,
    WebSocketApi,
    WebSocketApiArgs,
    account_logging_role,
)
from components.context import RegionalContext
from components.functions import (
    ARCHITECTURE,
    HANDLERS,
    RUNTIME,
    StreamerFunction,
    StreamerFunctionArgs,
    environment,
)
from components.http_api import HttpApi, HttpApiArgs
from components.notifications import Notifications, NotificationsArgs
from components.package import Artifacts
from components.processor import ProcessorMapping, ProcessorMappingArgs
from components.settings import FUNCTION_NAMES, StackSettings
from components.tables import RegionalTables

#: The scheduled functions: EventBridge's shortest rate, and what each run does.
SCHEDULES = {
    "sweeper": "Re-drive requests whose lease expired or whose retry is due",
    "poller": "Poll the external work of WAITING requests whose poll time came",
}
SCHEDULE_RATE = "rate(1 minute)"
#: SQS's maximum, so a dead letter can be inspected for two weeks.
DEAD_LETTER_RETENTION_S = 14 * 24 * 3600


@dataclass
class RegionalStackArgs:
    """The region, the prefix for names AWS sees, and what the region is built from."""

    region: str
    prefix: str
    settings: StackSettings
    tables: RegionalTables
    artifacts: Artifacts


class RegionalStack(pulumi.ComponentResource):
    """One region's API, functions, processor mapping, sweeper schedule and alarms."""

    url: pulumi.Output[str]
    http_url: pulumi.Output[str]
    management_endpoint: pulumi.Output[str]
    connections_arn: pulumi.Output[str]
    notification_topic_arn: pulumi.Output[str]
    event_bus_name: pulumi.Output[str]
    alarm_actions: list[pulumi.Input[str]]
    functions: dict[str, StreamerFunction]

    def __init__(
        self, name: str, args: RegionalStackArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("streamer:components:RegionalStack", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings, tables = args.settings, args.tables

        self.alarm_actions = list(settings.alarm_actions.get(args.region, ()))
        if not self.alarm_actions:
            self.alarm_actions = [aws.sns.Topic(f"{name}-alarms", opts=child).arn]

        layers = {"dependencies": args.artifacts.layer}
        if settings.tracing:
            # The X-Ray SDK is imported only with tracing on: untraced stacks never ship it.
            layers["tracing"] = args.artifacts.tracing_layer
        layer_arns = [
            aws.lambda_.LayerVersion(
                f"{name}-{layer}",
                layer_name=f"{args.prefix}-{layer}",
                code=pulumi.FileArchive(str(archive.path)),
                source_code_hash=archive.sha256,
                compatible_runtimes=[RUNTIME],
                compatible_architectures=[ARCHITECTURE],
                opts=child,
            ).arn
            for layer, archive in layers.items()
        ]
        dead_letters = aws.sqs.Queue(
            f"{name}-processor-dead-letters",
            message_retention_seconds=DEAD_LETTER_RETENTION_S,
            sqs_managed_sse_enabled=True,
            opts=child,
        )
        extra_statements = {
            "processor": [
                policies.statement(policies.STREAM_READ_ACTIONS, [tables.requests_stream_arn]),
                policies.statement(policies.STREAM_LIST_ACTIONS, ["*"]),
                policies.statement(("sqs:SendMessage",), [dead_letters.arn]),
            ]
        }
        code = pulumi.FileArchive(str(args.artifacts.code.path))
        region = RegionalContext(
            prefix=args.prefix,
            settings=settings,
            tables=tables,
            code=code,
            code_sha256=args.artifacts.code.sha256,
            layer_arns=layer_arns,
            alarm_actions=self.alarm_actions,
        )
        notifications = Notifications(
            f"{name}-notifications",
            NotificationsArgs(function_name=f"{name}-publish", region=region),
            opts=child,
        )
        self.functions = {
            function: StreamerFunction(
                f"{name}-{function}",
                StreamerFunctionArgs(
                    handler=HANDLERS[function],
                    size=settings.functions[function],
                    code=code,
                    code_sha256=args.artifacts.code.sha256,
                    layers=layer_arns,
                    environment={
                        **environment(function, settings, tables.names),
                        **notifications.environment(function),
                    },
                    log_group_name=f"/{args.prefix}/{function}",
                    log_retention_days=settings.log_retention_days,
                    tracing=settings.tracing,
                    statements=[
                        *policies.table_statements(function, tables.arns),
                        *extra_statements.get(function, []),
                        *notifications.statements(function),
                    ],
                    alarm_actions=self.alarm_actions,
                ),
                opts=child,
            )
            for function in FUNCTION_NAMES
        }
        self.functions["publish"] = notifications.publish
        lambdas = {function: self.functions[function].function for function in FUNCTION_NAMES}

        api = WebSocketApi(
            f"{name}-websocket",
            WebSocketApiArgs(
                api_name=f"{args.prefix}-websocket",
                authorizer=lambdas["authorizer"],
                routes={
                    CONNECT: lambdas["connect"],
                    DISCONNECT: lambdas["disconnect"],
                    DEFAULT: lambdas["router"],
                },
                stage_name=settings.stage_name,
                throttle=settings.throttle,
                log_retention_days=settings.log_retention_days,
                access_log_group_name=f"/{args.prefix}/websocket-access",
                account_logging_role=self._account_logging_role(name, args, child),
            ),
            opts=child,
        )
        http_api = HttpApi(
            f"{name}-http-api",
            HttpApiArgs(function_name=f"{name}-http", region=region, websocket_url=api.url),
            opts=child,
        )
        self.functions["http"] = http_api.function
        ProcessorMapping(
            f"{name}-processor-stream",
            ProcessorMappingArgs(
                region=args.region,
                function=lambdas["processor"],
                stream_arn=tables.requests_stream_arn,
                dead_letter_queue=dead_letters,
                settings=settings.processor,
                alarm_actions=self.alarm_actions,
            ),
            opts=child,
        )
        for function, description in SCHEDULES.items():
            schedule = aws.cloudwatch.EventRule(
                f"{name}-{function}-schedule",
                description=description,
                schedule_expression=SCHEDULE_RATE,
                opts=child,
            )
            aws.cloudwatch.EventTarget(
                f"{name}-{function}-target",
                rule=schedule.name,
                arn=lambdas[function].arn,
                opts=child,
            )
            aws.lambda_.Permission(
                f"{name}-{function}-invoke",
                action="lambda:InvokeFunction",
                function=lambdas[function].name,
                principal="events.amazonaws.com",
                source_arn=schedule.arn,
                opts=child,
            )

        self.url = api.url
        self.http_url = http_api.url
        self.management_endpoint = api.management_endpoint
        self.connections_arn = api.connections_arn
        self.notification_topic_arn = notifications.topic_arn
        self.event_bus_name = notifications.bus_name
        self.register_outputs(
            {
                "url": self.url,
                "http_url": self.http_url,
                "management_endpoint": self.management_endpoint,
                "connections_arn": self.connections_arn,
                "notification_topic_arn": self.notification_topic_arn,
                "event_bus_name": self.event_bus_name,
            }
        )

    @staticmethod
    def _account_logging_role(
        name: str, args: RegionalStackArgs, opts: pulumi.ResourceOptions
    ) -> pulumi.Output[str] | None:
        """With API Gateway logging on, the CloudWatch Logs role the region's bootstrap
        stack set, read through a stack reference and checked (a clear error at preview
        when it is missing); None with logging off."""
        if not args.settings.api_gateway_logging:
            return None
        stack = args.settings.bootstrap_stack_of(args.region)
        reference = pulumi.StackReference(f"{name}-bootstrap", stack_name=stack, opts=opts)
        return reference.outputs.apply(
            lambda outputs: account_logging_role(outputs, stack, args.region)
        )

    @property
    def sender_roles(self) -> dict[str, aws.iam.Role]:
        """Roles of the functions that post to clients, by function name."""
        return {function: self.functions[function].role for function in policies.CONNECTION_SENDERS}
