"""One Lambda function with its own role, log group and alarms; and what each one is given.

Every function is Python 3.12 on arm64, runs the shared code archive with the dependency
layer (and the tracing layer when traced), and reads its configuration from the
environment variable names in `streamer.config`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components import policies
from components.alarms import function_alarms
from components.settings import FunctionSize, StackSettings
from streamer import config, entry
from streamer.schema import CONNECTIONS, REQUESTS, SUBSCRIPTIONS

RUNTIME = "python3.12"
ARCHITECTURE = "arm64"

HANDLERS: Mapping[str, str] = {
    "authorizer": entry.AUTHORIZER,
    "connect": entry.CONNECT,
    "disconnect": entry.DISCONNECT,
    "router": entry.ROUTER,
    "processor": entry.PROCESSOR,
    "sweeper": entry.SWEEPER,
    "poller": entry.POLLER,
}

#: Functions that take requests (and so need the request tunables).
_REQUEST_HANDLERS = ("router", "processor", "sweeper", "poller")


def environment(
    function: str, settings: StackSettings, table_names: Mapping[str, pulumi.Input[str]]
) -> dict[str, pulumi.Input[str]]:
    """The environment variables `function` runs with.

    The authorizer gets the token settings and no table; the JWT key stays a secret.
    `AWS_REGION` is set by Lambda itself, and the management endpoint is derived from
    each event, so neither is set here.
    """
    env: dict[str, pulumi.Input[str]] = {
        config.LOG_LEVEL: settings.runtime.log_level,
        config.TRACING: "true" if settings.tracing else "false",
    }
    if function == "authorizer":
        jwt = settings.jwt
        env[config.JWT_ISSUER] = jwt.issuer
        env[config.JWT_AUDIENCE] = jwt.audience
        if jwt.jwks_url is not None:
            env[config.JWT_JWKS_URL] = jwt.jwks_url
        if jwt.public_key is not None:
            env[config.JWT_PUBLIC_KEY] = jwt.public_key
        if jwt.leeway_s is not None:
            env[config.JWT_LEEWAY_S] = str(jwt.leeway_s)
        if settings.allowed_tenants:
            env[config.ALLOWED_TENANTS] = ",".join(settings.allowed_tenants)
        if settings.watch_token_secret is not None:
            env[config.WATCH_TOKEN_SECRET] = settings.watch_token_secret
        return env
    env[config.CONNECTIONS_TABLE] = table_names[CONNECTIONS.logical_name]
    env[config.REQUESTS_TABLE] = table_names[REQUESTS.logical_name]
    env[config.SUBSCRIPTIONS_TABLE] = table_names[SUBSCRIPTIONS.logical_name]
    if function in _REQUEST_HANDLERS:
        tuning = settings.runtime
        env.update(
            {
                config.APP_MODULE: tuning.app_module,
                config.ASYNC_THRESHOLD_MS: str(tuning.async_threshold_ms),
                config.SYNC_TIMEOUT_MS: str(tuning.sync_timeout_ms),
                config.PROGRESS_FLUSH_MS: str(tuning.progress_flush_ms),
                config.REQUEST_RETENTION_S: str(tuning.request_retention_s),
                config.MAX_ATTEMPTS: str(tuning.max_attempts),
                config.LEASE_MARGIN_S: str(tuning.lease_margin_s),
                config.PROCESSOR_CONCURRENCY: str(settings.processor.concurrency),
            }
        )
    if function == "poller":
        env[config.POLLER_BATCH_SIZE] = str(settings.runtime.poller_batch_size)
    if function == "router":
        env[config.RATE_LIMIT_PER_S] = str(settings.runtime.rate_limit_per_s)
        env[config.RATE_LIMIT_BURST] = str(settings.runtime.rate_limit_burst)
        env[config.MAX_ACTIVE_REQUESTS] = str(settings.runtime.max_active_requests)
        env[config.WATCH_TOKEN_TTL_S] = str(settings.runtime.watch_token_ttl_s)
        if settings.watch_token_secret is not None:
            env[config.WATCH_TOKEN_SECRET] = settings.watch_token_secret
    return env


@dataclass
class StreamerFunctionArgs:
    """What one function runs, with which permissions, and where its logs and alarms go."""

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
    alarm_actions: Sequence[pulumi.Input[str]] = field(default_factory=list)


class StreamerFunction(pulumi.ComponentResource):
    """A function, its execution role and policy, its log group, and error/throttle alarms."""

    function: aws.lambda_.Function
    role: aws.iam.Role

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
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=dict(args.environment)),
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(
                mode="Active" if args.tracing else "PassThrough"
            ),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="Text", log_group=log_group.name
            ),
            # The policy and log group first, so the first invocation can already log
            # and reach its tables.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, log_group]),
        )
        function_alarms(
            name,
            function_name=self.function.name,
            log_group_name=log_group.name,
            handler=args.handler,
            alarm_actions=args.alarm_actions,
            opts=child,
        )
        self.register_outputs(
            {
                "function_arn": self.function.arn,
                "function_name": self.function.name,
                "role_arn": self.role.arn,
            }
        )
