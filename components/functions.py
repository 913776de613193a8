"""One Lambda function with its own role and log group; and what each one is given.

Every function is Python 3.12 on arm64, runs the shared code archive with the dependency
layer (and the tracing layer when traced), and reads its configuration from the
environment variable names in `streamer.config`. Which functions exist, their entry
points, sizes, variables and table access are `streamer.catalog`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components import policies
from components.context import RegionalContext
from components.rollout import LIVE_ALIAS
from components.settings import SCHEDULE_INTERVAL_S, FunctionSize, StackSettings, VpcSettings
from streamer import catalog, config
from streamer.schema import CONNECTIONS, REQUESTS, SUBSCRIPTIONS

RUNTIME = "python3.12"
#: A function's use of the stack's customer-managed key: decrypt its environment and read
#: the encrypted tables and queues, make data keys to write them (components/keys.py).
FUNCTION_KMS_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")
#: What a function in a VPC needs to manage its network interfaces: AWS's managed policy
#: (lambda/latest/dg/configuration-vpc.html, "Required IAM permissions":
#: ec2:CreateNetworkInterface, DescribeNetworkInterfaces, DescribeSubnets,
#: DeleteNetworkInterface, AssignPrivateIpAddresses, UnassignPrivateIpAddresses).
VPC_ACCESS_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
ARCHITECTURE = "arm64"
#: Variables whose value a component's resource gives: the WebSocket API's URL, the event
#: bus (with lifecycle events on), the publish function's topic retention.
RESOURCE_VARIABLES = frozenset({config.WEBSOCKET_URL, config.EVENT_BUS, config.TOPIC_RETENTION_S})
#: Issue 16's variables, read by `streamer.config` (docs/guarantees.md, "Multi-region"):
#: every function of every region gets them, so each knows the regions whose replicas it
#: may write (a request's decider) and the times that bound a takeover.
STACK_REGIONS = config.REGIONS
SWEEP_INTERVAL_S = config.SWEEP_INTERVAL_S
HEARTBEAT_STALE_S = config.HEARTBEAT_STALE_S
TAKEOVER_GRACE_S = config.TAKEOVER_GRACE_S
MULTI_REGION_VARIABLES = frozenset(
    {STACK_REGIONS, SWEEP_INTERVAL_S, HEARTBEAT_STALE_S, TAKEOVER_GRACE_S}
)
_TABLE_VARIABLES = {
    config.CONNECTIONS_TABLE: CONNECTIONS,
    config.REQUESTS_TABLE: REQUESTS,
    config.SUBSCRIPTIONS_TABLE: SUBSCRIPTIONS,
}


def _values(
    settings: StackSettings, table_names: Mapping[str, pulumi.Input[str]]
) -> dict[str, pulumi.Input[str] | None]:
    """Every variable the stack's settings give a value, None for an optional one left out.

    `AWS_REGION` is set by Lambda itself, and the management endpoint is derived from
    each event, so neither is here.
    """
    jwt, tuning = settings.jwt, settings.runtime

    def text(value: object) -> str | None:
        return None if value is None else str(value)

    return {
        config.LOG_LEVEL: tuning.log_level,
        config.LOG_DEBUG_SAMPLE_RATE: str(tuning.log_debug_sample_rate),
        # The `stage` dimension of every metric (streamer.metrics).
        config.STAGE: settings.stage_name,
        config.TRACING: "true" if settings.tracing else "false",
        config.JWT_ISSUER: jwt.issuer,
        config.JWT_AUDIENCE: jwt.audience,
        config.JWT_JWKS_URL: jwt.jwks_url,
        # A secret: stays an output, never text.
        config.JWT_PUBLIC_KEY: jwt.public_key,
        config.JWT_LEEWAY_S: text(jwt.leeway_s),
        config.ALLOWED_TENANTS: ",".join(settings.allowed_tenants) or None,
        config.WATCH_TOKEN_SECRET: settings.watch_token_secret,
        **{
            variable: table_names[table.logical_name]
            for variable, table in _TABLE_VARIABLES.items()
            if table.logical_name in table_names
        },
        config.APP_MODULE: tuning.app_module,
        config.ASYNC_THRESHOLD_MS: str(tuning.async_threshold_ms),
        config.SYNC_TIMEOUT_MS: str(tuning.sync_timeout_ms),
        config.PROGRESS_FLUSH_MS: str(tuning.progress_flush_ms),
        config.REQUEST_RETENTION_S: str(tuning.request_retention_s),
        config.MAX_ATTEMPTS: str(tuning.max_attempts),
        config.LEASE_MARGIN_S: str(tuning.lease_margin_s),
        config.PROCESSOR_CONCURRENCY: str(settings.processor.concurrency),
        config.POLLER_BATCH_SIZE: str(tuning.poller_batch_size),
        config.DUE_SHARDS: str(tuning.due_shards),
        config.RATE_LIMIT_PER_S: str(tuning.rate_limit_per_s),
        config.RATE_LIMIT_BURST: str(tuning.rate_limit_burst),
        config.MAX_ACTIVE_REQUESTS: str(tuning.max_active_requests),
        config.WATCH_TOKEN_TTL_S: str(tuning.watch_token_ttl_s),
        config.CIRCUIT_WINDOW_S: str(tuning.circuit_window_s),
        config.CIRCUIT_FAILURE_RATIO: str(tuning.circuit_failure_ratio),
        config.CIRCUIT_MINIMUM_CALLS: str(tuning.circuit_minimum_calls),
        config.CIRCUIT_OPEN_S: str(tuning.circuit_open_s),
        config.CIRCUIT_COUNT_SHARDS: str(tuning.circuit_count_shards),
        # Every region of the stack in stack order, the function's own among them.
        STACK_REGIONS: ",".join(settings.regions),
        # The interval the sweeper's schedule runs at (components/regional.py).
        SWEEP_INTERVAL_S: str(SCHEDULE_INTERVAL_S),
        HEARTBEAT_STALE_S: str(settings.heartbeat_stale_s),
        TAKEOVER_GRACE_S: str(settings.takeover_grace_s),
    }


def environment(
    function: str,
    settings: StackSettings,
    table_names: Mapping[str, pulumi.Input[str]],
    resources: Mapping[str, pulumi.Input[str] | None] | None = None,
) -> dict[str, pulumi.Input[str]]:
    """The environment variables `function` runs with: those the catalog gives it, and
    the multi-region ones (`MULTI_REGION_VARIABLES`) every function gets.

    Values come from the stack's settings, and from `resources` for those a component's
    resource gives (`RESOURCE_VARIABLES`); a None or absent one is left out. A variable
    the catalog names that neither can give is a `KeyError`, naming it.
    """
    values = {**_values(settings, table_names), **(resources or {})}
    wanted = catalog.FUNCTIONS[function].environment | MULTI_REGION_VARIABLES
    unknown = sorted(wanted - values.keys() - RESOURCE_VARIABLES)
    if unknown:
        raise KeyError(f"{function} is given {unknown}, which nothing here has a value for")
    return {name: value for name in sorted(wanted) if (value := values.get(name)) is not None}


@dataclass
class StreamerFunctionArgs:
    """What one function runs, with which permissions, and where its logs go."""

    handler: str
    size: FunctionSize
    code: pulumi.Archive
    code_sha256: str
    layers: Sequence[pulumi.Input[str]]
    environment: Mapping[str, pulumi.Input[str]]
    log_group_name: str
    log_retention_days: int
    tracing: bool
    statements: Sequence[dict[str, Any]] = field(default_factory=list)
    #: CodeDeploy, not Pulumi, moves the `live` alias to a new version (components/rollout.py).
    shifted: bool = False
    #: The customer-managed key of the environment variables and the log group; None: AWS's.
    kms_key_arn: pulumi.Input[str] | None = None
    #: The VPC the function runs in; None: Lambda's own network.
    vpc: VpcSettings | None = None


def function_args(
    function: str,
    region: RegionalContext,
    *,
    resources: Mapping[str, pulumi.Input[str] | None] | None = None,
    statements: Sequence[dict[str, Any]] = (),
) -> StreamerFunctionArgs:
    """`function` as the catalog declares it, in `region`, sized as the stack says.

    `resources` gives the variables only a resource has a value for; `statements` adds
    permissions on resources the calling component makes (queues, buses, APIs).
    """
    spec = catalog.FUNCTIONS[function]
    settings = region.settings
    return StreamerFunctionArgs(
        handler=spec.handler,
        size=settings.functions[function],
        code=region.code,
        code_sha256=region.code_sha256,
        layers=region.layer_arns,
        environment=environment(function, settings, region.tables.names, resources),
        log_group_name=f"/{region.prefix}/{function}",
        log_retention_days=settings.log_retention_days,
        tracing=settings.tracing,
        shifted=settings.rollout_settings.shifted,
        kms_key_arn=region.kms_key_arn,
        vpc=region.vpc,
        statements=[
            *policies.table_statements(function, region.tables.arns_by_region),
            *policies.stream_statements(function, region.tables.requests_stream_arn),
            *statements,
            *(
                [policies.statement(FUNCTION_KMS_ACTIONS, [region.kms_key_arn])]
                if region.kms_key_arn is not None
                else []
            ),
        ],
    )


class StreamerFunction(pulumi.ComponentResource):
    """A function publishing a version at each change, its `live` alias (what every trigger
    invokes), its execution role and policy, and its log group (its alarms are the region's:
    components/service_alarms.py)."""

    function: aws.lambda_.Function
    alias: aws.lambda_.Alias
    role: aws.iam.Role
    log_group_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: StreamerFunctionArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("streamer:components:StreamerFunction", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=policies.assume_role_document("lambda.amazonaws.com"),
            opts=child,
        )
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=args.log_group_name,
            retention_in_days=args.log_retention_days,
            # The key's policy lets CloudWatch Logs use it (components/keys.py).
            kms_key_id=args.kms_key_arn,
            opts=child,
        )
        statements = [
            policies.statement(policies.LOG_ACTIONS, [pulumi.Output.concat(log_group.arn, ":*")]),
            *args.statements,
        ]
        if args.tracing:
            statements.append(policies.statement(policies.XRAY_ACTIONS, ["*"]))
        policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=self.role.id,
            policy=policies.document(statements),
            opts=child,
        )
        waits_for: list[pulumi.Resource] = [policy, log_group]
        if args.vpc is not None:
            waits_for.append(
                aws.iam.RolePolicyAttachment(
                    f"{name}-vpc-access",
                    role=self.role.name,
                    policy_arn=VPC_ACCESS_POLICY,
                    opts=child,
                )
            )
        self.function = aws.lambda_.Function(
            f"{name}-function",
            runtime=RUNTIME,
            architectures=[ARCHITECTURE],
            handler=args.handler,
            code=args.code,
            code_sha256=args.code_sha256,
            layers=list(args.layers),
            role=self.role.arn,
            memory_size=args.size.memory_mb,
            timeout=args.size.timeout_s,
            # -1 (UNRESERVED) is Lambda's "no reservation".
            reserved_concurrent_executions=args.size.reserved_concurrency,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=dict(args.environment)),
            # None: Lambda's AWS-managed key (configuration-envvars-encryption.html).
            kms_key_arn=args.kms_key_arn,
            vpc_config=None
            if args.vpc is None
            else aws.lambda_.FunctionVpcConfigArgs(
                subnet_ids=list(args.vpc.subnet_ids),
                security_group_ids=list(args.vpc.security_group_ids),
            ),
            # Each change of code or configuration publishes a new version, which the
            # `live` alias then points at (lambda/latest/dg/configuration-versions.html).
            publish=True,
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(
                mode="Active" if args.tracing else "PassThrough"
            ),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="Text", log_group=log_group.name
            ),
            # The policy and log group first, so the first invocation can already log
            # and reach its tables.
            opts=pulumi.ResourceOptions(parent=self, depends_on=waits_for),
        )
        self.alias = aws.lambda_.Alias(
            f"{name}-live",
            name=LIVE_ALIAS,
            function_name=self.function.name,
            # Created on the version just published. Once CodeDeploy shifts the alias, the
            # version it is on is CodeDeploy's: Pulumi keeps whatever it finds (ignore_changes
            # applies to updates only, so the first deploy still sets it).
            function_version=self.function.version,
            opts=pulumi.ResourceOptions(
                parent=self, ignore_changes=["functionVersion"] if args.shifted else None
            ),
        )
        self.log_group_name = log_group.name
        self.register_outputs(
            {
                "alias_arn": self.alias.arn,
                "function_arn": self.function.arn,
                "function_name": self.function.name,
                "role_arn": self.role.arn,
            }
        )
