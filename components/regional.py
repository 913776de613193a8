"""Everything Streamer runs in one region, on that region's provider.

The layers (AWS's managed Powertools layer, the dependency layer, the app's layer when an
app brings requirements, the tracing layer when the stack traces), the functions of
`streamer.catalog` with their roles, the WebSocket API with the functions its routes invoke
(with access logs once a check finds the account's bootstrap for the region), the mapping
on this region's replica stream with its dead-letter queue, a one-minute schedule for each
scheduled function; and watching it all: an alarm topic with the configured subscribers,
the alarms (components/service_alarms.py), the per-tenant Contributor Insights rules and
saved queries (components/insights.py) and the region's dashboard (components/dashboard.py).
Every trigger invokes a function's `live` alias; with `streamer:rollout` canary or linear,
`Deployments` has CodeDeploy shift it to each new version (components/deployments.py).
With `streamer:vpc`, the functions run in the region's subnets, with `VpcEndpoints`.
Posting to clients (`execute-api:ManageConnections`) is granted afterwards by
`ConnectionsAccess`, because it names every region's API.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import policies, powertools
from components.api import (
    CONNECT,
    DEFAULT,
    DISCONNECT,
    WebSocketApi,
    WebSocketApiArgs,
    account_logging_role,
)
from components.context import RegionalContext
from components.dashboard import RegionDashboardArgs, region_dashboard
from components.deployments import Deployments, DeploymentsArgs
from components.functions import ARCHITECTURE, RUNTIME, StreamerFunction, function_args
from components.http_api import HttpApi, HttpApiArgs
from components.insights import TenantInsights, TenantInsightsArgs
from components.network import VpcEndpoints, VpcEndpointsArgs
from components.notifications import Notifications, NotificationsArgs
from components.package import Archive, Artifacts
from components.processor import ProcessorMapping, ProcessorMappingArgs
from components.service_alarms import ServiceAlarms, ServiceAlarmsArgs
from components.settings import SCHEDULE_INTERVAL_S, StackSettings
from components.tables import RegionalTables
from streamer import catalog
from streamer.catalog import Trigger

#: The functions made by the component that makes what invokes them: `HttpApi` (the HTTP
#: API) and `Notifications` (the topic and the bus).
MADE_BY_COMPONENTS = frozenset({"http", "publish"})
#: The scheduled functions' rate, every SCHEDULE_INTERVAL_S: "rate(1 minute)", EventBridge's
#: shortest (a rate of more than one takes the plural unit, "rate(5 minutes)").
SCHEDULE_RATE = (
    f"rate({SCHEDULE_INTERVAL_S // 60} minute{'' if SCHEDULE_INTERVAL_S == 60 else 's'})"
)
#: Layers a function may have at most (Lambda quotas,
#: docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html): ours are four at most.
MAX_LAYERS = 5
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
    #: The region's customer-managed key (components/keys.py); None: AWS's own keys.
    kms_key_arn: pulumi.Input[str] | None = None


class RegionalStack(pulumi.ComponentResource):
    """One region's API, functions, processor mapping, sweeper schedule and alarms."""

    url: pulumi.Output[str]
    http_url: pulumi.Output[str]
    management_endpoint: pulumi.Output[str]
    custom_domain_url: pulumi.Output[str] | None
    custom_domain_target: pulumi.Output[str] | None
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

        # Alarms notify the region's topic (an alarm's SNS action must be in its own
        # region), and any targets configured for the region besides.
        alarm_topic = aws.sns.Topic(
            f"{name}-alarms", kms_master_key_id=args.kms_key_arn, opts=child
        )
        for index, subscription in enumerate(settings.alarm_subscriptions):
            aws.sns.TopicSubscription(
                f"{name}-alarms-subscription-{index}",
                topic=alarm_topic.arn,
                protocol=subscription.protocol,
                endpoint=subscription.endpoint,
                opts=child,
            )
        self.alarm_actions = [alarm_topic.arn, *settings.alarm_actions.get(args.region, ())]

        def own_layer(layer: str, archive: Archive) -> pulumi.Output[str]:
            return aws.lambda_.LayerVersion(
                f"{name}-{layer}",
                layer_name=f"{args.prefix}-{layer}",
                code=pulumi.FileArchive(str(archive.path)),
                source_code_hash=archive.sha256,
                compatible_runtimes=[RUNTIME],
                compatible_architectures=[ARCHITECTURE],
                opts=child,
            ).arn

        # Lambda extracts the layers into /opt in this order, a later one's files over an
        # earlier one's (docs.aws.amazon.com/lambda/latest/dg/adding-layers.html). The managed
        # Powertools layer, which `streamer.metrics` writes through (components/powertools.py),
        # comes first: it brings its own dependencies, and wherever a package is in ours too
        # (the dependency, app or tracing layer), our pinned build is the one imported.
        layer_arns = [
            powertools.layer_arn(args.region, settings.powertools_layer_arns, self),
            own_layer("dependencies", args.artifacts.layer),
        ]
        if args.artifacts.app_layer is not None:
            # The requirements of an app kept outside `lambdas/` (docs/deploying.md).
            layer_arns.append(own_layer("app", args.artifacts.app_layer))
        if settings.tracing:
            # The X-Ray SDK is imported only with tracing on: untraced stacks never ship it.
            layer_arns.append(own_layer("tracing", args.artifacts.tracing_layer))
        dead_letters = aws.sqs.Queue(
            f"{name}-processor-dead-letters",
            message_retention_seconds=DEAD_LETTER_RETENTION_S,
            # SSE-SQS unless the stack has its own key (the two are exclusive).
            sqs_managed_sse_enabled=args.kms_key_arn is None,
            kms_master_key_id=args.kms_key_arn,
            opts=child,
        )
        if args.region in settings.vpc:
            # The functions run in the stack's subnets: the endpoints they need there.
            VpcEndpoints(
                f"{name}-vpc-endpoints",
                VpcEndpointsArgs(region=args.region, vpc=settings.vpc[args.region]),
                opts=child,
            )
        code = pulumi.FileArchive(str(args.artifacts.code.path))
        region = RegionalContext(
            prefix=args.prefix,
            settings=settings,
            tables=tables,
            code=code,
            code_sha256=args.artifacts.code.sha256,
            layer_arns=layer_arns,
            alarm_actions=self.alarm_actions,
            kms_key_arn=args.kms_key_arn,
            vpc=settings.vpc.get(args.region),
        )
        notifications = Notifications(
            f"{name}-notifications",
            NotificationsArgs(function_name=f"{name}-publish", region=region),
            opts=child,
        )

        def made_here(function: str) -> StreamerFunction:
            statements = notifications.statements(function)
            if Trigger.REQUESTS_STREAM in catalog.FUNCTIONS[function].triggers:
                # The mapping's on-failure destination, written with the function's role.
                statements.append(policies.statement(("sqs:SendMessage",), [dead_letters.arn]))
            return StreamerFunction(
                f"{name}-{function}",
                function_args(
                    function,
                    region,
                    resources=notifications.environment(function),
                    statements=statements,
                ),
                opts=child,
            )

        self.functions = {
            function: made_here(function)
            for function in catalog.FUNCTIONS
            if function not in MADE_BY_COMPONENTS
        }
        self.functions["publish"] = notifications.publish
        # What every trigger invokes: each function's `live` alias.
        lambdas = {function: made.alias for function, made in self.functions.items()}

        api = WebSocketApi(
            f"{name}-websocket",
            WebSocketApiArgs(
                api_name=f"{args.prefix}-websocket",
                authorizer=lambdas[catalog.the_one(Trigger.WEBSOCKET_AUTHORIZER).name],
                routes={
                    route: lambdas[catalog.the_one(trigger).name]
                    for route, trigger in (
                        (CONNECT, Trigger.WEBSOCKET_CONNECT),
                        (DISCONNECT, Trigger.WEBSOCKET_DISCONNECT),
                        (DEFAULT, Trigger.WEBSOCKET_DEFAULT),
                    )
                },
                stage_name=settings.stage_name,
                throttle=settings.throttle,
                log_retention_days=settings.log_retention_days,
                access_log_group_name=f"/{args.prefix}/websocket-access",
                account_logging_role=self._account_logging_role(name, args, child),
                domain_name=settings.domain_name,
                certificate_arn=settings.certificate_arns.get(args.region),
                kms_key_arn=args.kms_key_arn,
            ),
            opts=child,
        )
        http_api = HttpApi(
            f"{name}-http-api",
            HttpApiArgs(
                function_name=f"{name}-http",
                region=region,
                websocket_url=api.url,
                authorizer=lambdas["authorizer"],
            ),
            opts=child,
        )
        self.functions["http"] = http_api.function
        ProcessorMapping(
            f"{name}-processor-stream",
            ProcessorMappingArgs(
                region=args.region,
                function=lambdas[catalog.the_one(Trigger.REQUESTS_STREAM).name],
                stream_arn=tables.requests_stream_arn,
                dead_letter_queue=dead_letters,
                settings=settings.processor,
            ),
            opts=child,
        )
        for scheduled in catalog.triggered_by(Trigger.SCHEDULE):
            function = scheduled.name
            schedule = aws.cloudwatch.EventRule(
                f"{name}-{function}-schedule",
                description=scheduled.description,
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
                function=lambdas[function].function_name,
                qualifier=lambdas[function].name,
                principal="events.amazonaws.com",
                source_arn=schedule.arn,
                opts=child,
            )
        alarms = self._watch(name, args, api, dead_letters, child)
        if settings.rollout_settings.shifted:
            # New versions reach traffic through CodeDeploy, rolled back by the alarms.
            Deployments(
                f"{name}-deployments",
                DeploymentsArgs(
                    prefix=args.prefix,
                    region=args.region,
                    rollout=settings.rollout_settings,
                    functions=self.functions,
                    rollback_alarms={f: alarms.rollback_alarms(f) for f in self.functions},
                    alarms=list(alarms.alarms.values()),
                ),
                opts=child,
            )

        self.url = api.url
        self.http_url = http_api.url
        self.management_endpoint = api.management_endpoint
        self.custom_domain_url = api.custom_domain_url
        self.custom_domain_target = api.custom_domain_target
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

    def _watch(
        self,
        name: str,
        args: RegionalStackArgs,
        api: WebSocketApi,
        dead_letters: aws.sqs.Queue,
        opts: pulumi.ResourceOptions,
    ) -> ServiceAlarms:
        """The region's alarms, per-tenant views and dashboard, over every function."""
        function_names = {f: made.function.name for f, made in self.functions.items()}
        log_groups = {f: made.log_group_name for f, made in self.functions.items()}
        processor = catalog.the_one(Trigger.REQUESTS_STREAM).name
        alarms = ServiceAlarms(
            f"{name}-service-alarms",
            ServiceAlarmsArgs(
                prefix=args.prefix,
                region=args.region,
                settings=args.settings,
                function_names=function_names,
                log_group_names=log_groups,
                dead_letter_queue_name=dead_letters.name,
                alarm_actions=self.alarm_actions,
            ),
            opts=opts,
        )
        insights = TenantInsights(
            f"{name}-insights",
            TenantInsightsArgs(prefix=args.prefix, log_group_names=list(log_groups.values())),
            opts=opts,
        )
        region_dashboard(
            f"{name}-dashboard",
            RegionDashboardArgs(
                dashboard_name=f"{args.prefix}-{args.region}",
                region=args.region,
                stage=args.settings.stage_name,
                functions=function_names,
                processor=function_names[processor],
                dead_letter_queue=dead_letters.name,
                api_id=api.api_id,
                tables=args.tables.names,
                rules=insights.rule_names,
            ),
            opts=opts,
        )
        return alarms

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
