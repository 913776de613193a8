"""Stack configuration: every `streamer:*` key, its default and its checks, read once.

`__main__.py` calls `StackSettings.load(pulumi.Config())`; the components take the
resulting plain values. Defaults of the runtime's own tunables come from the runtime's
`streamer.config.Settings`, so the two cannot disagree. docs/deploying.md lists the keys.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pulumi

from components.rollout import STRATEGIES, Rollout
from streamer import catalog
from streamer.circuit import MAX_COUNT_SHARDS as MAX_CIRCUIT_COUNT_SHARDS
from streamer.config import Settings as RuntimeSettings
from streamer.cors import CorsRules, InvalidCorsRules
from streamer.keys import MAX_DUE_SHARDS

#: API Gateway ends every integration call (so every sync answer) after 29 seconds.
API_INTEGRATION_LIMIT_S = catalog.API_INTEGRATION_LIMIT_S

#: API Gateway caches a Lambda authorizer's answer for at most an hour.
HTTP_AUTHORIZER_CACHE_LIMIT_S = 3600

#: Retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557}
    | {2922, 3288, 3653}
)

#: Where the environment stacks find the account bootstrap of a region (bootstrap/).
DEFAULT_BOOTSTRAP_STACK = "{organization}/streamer-bootstrap/{region}"

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_STAGE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_CERTIFICATE_ARN = re.compile(
    r"^arn:aws[a-z-]*:acm:([a-z]{2}(?:-[a-z]+)+-\d):\d{12}:certificate/.+$"
)
#: A layer version's ARN (the API's LayerVersionArn pattern); group 1 is its region.
_LAYER_VERSION_ARN = re.compile(
    r"^arn:aws[a-z-]*:lambda:([a-z]{2}(?:-[a-z]+)+-\d):\d{12}:layer:[a-zA-Z0-9_-]+:\d+$"
)
#: A KMS key's ARN; group 1 is its region.
_KMS_KEY_ARN = re.compile(
    r"^arn:aws[a-z-]*:kms:([a-z]{2}(?:-[a-z]+)+-\d):\d{12}:key/[a-zA-Z0-9-]+$"
)
_SUBNET, _SECURITY_GROUP = re.compile(r"^subnet-[0-9a-f]+$"), re.compile(r"^sg-[0-9a-f]+$")
_VPC, _ROUTE_TABLE = re.compile(r"^vpc-[0-9a-f]+$"), re.compile(r"^rtb-[0-9a-f]+$")
#: A Lambda function takes at most 16 subnets and 5 security groups (API_VpcConfig.html).
MAX_SUBNETS, MAX_SECURITY_GROUPS = 16, 5
_RUNTIME_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RuntimeSettings)}
#: How often EventBridge runs each scheduled function (sweeper, poller): its shortest rate,
#: one minute (ScheduleExpression rate()). The sweeper's heartbeat is written this often.
SCHEDULE_INTERVAL_S = 60


_Settings = TypeVar("_Settings")


class ConfigError(ValueError):
    """A `streamer:*` configuration value is missing or out of range; the message names the key."""


#: Lambda's own value for "no reserved concurrency": the function draws on the account's
#: unreserved pool (aws.lambda_.Function `reserved_concurrent_executions`, default -1).
UNRESERVED = -1

#: Reserved concurrency by function unless `streamer:functions` says otherwise: the
#: processor is capped at 100 concurrent batches, as the design promises, so a burst of
#: async work cannot take the concurrency the router and authorizer need to answer.
DEFAULT_RESERVED_CONCURRENCY: Mapping[str, int] = {"processor": 100}


@dataclass(frozen=True)
class FunctionSize:
    """Memory (MB), timeout (seconds) and reserved concurrency of one function."""

    memory_mb: int
    timeout_s: int
    #: Concurrent executions set aside for (and capping) the function; UNRESERVED: none.
    reserved_concurrency: int = UNRESERVED


#: Each function's size unless `streamer:functions` overrides it: the catalog's.
DEFAULT_SIZES: Mapping[str, FunctionSize] = {
    f.name: FunctionSize(
        f.memory_mb, f.timeout_s, DEFAULT_RESERVED_CONCURRENCY.get(f.name, UNRESERVED)
    )
    for f in catalog.FUNCTIONS.values()
}

#: Protocols an SNS subscription takes (sns/latest/api/API_Subscribe.html).
SUBSCRIPTION_PROTOCOLS = frozenset(
    {"http", "https", "email", "email-json", "sms", "sqs", "application", "lambda", "firehose"}
)


@dataclass(frozen=True)
class ProcessorSettings:
    """The requests-stream event source mapping and the processor's fan-out."""

    batch_size: int = catalog.REQUESTS_STREAM_MAPPING.batch_size
    batch_window_s: int = catalog.REQUESTS_STREAM_MAPPING.maximum_batching_window_s
    parallelization_factor: int = catalog.REQUESTS_STREAM_MAPPING.parallelization_factor
    concurrency: int = _RUNTIME_DEFAULTS["processor_concurrency"]
    max_retry_attempts: int = catalog.REQUESTS_STREAM_MAPPING.maximum_retry_attempts
    max_record_age_s: int = catalog.REQUESTS_STREAM_MAPPING.maximum_record_age_s
    iterator_age_alarm_ms: int = 60_000


@dataclass(frozen=True)
class RuntimeTuning:
    """Runtime tunables handed to the functions as environment variables."""

    app_module: str = _RUNTIME_DEFAULTS["app_module"]
    async_threshold_ms: int = _RUNTIME_DEFAULTS["async_threshold_ms"]
    sync_timeout_ms: int = _RUNTIME_DEFAULTS["sync_timeout_ms"]
    progress_flush_ms: int = _RUNTIME_DEFAULTS["progress_flush_ms"]
    request_retention_s: int = _RUNTIME_DEFAULTS["request_retention_s"]
    max_attempts: int = _RUNTIME_DEFAULTS["max_attempts"]
    lease_margin_s: int = _RUNTIME_DEFAULTS["lease_margin_s"]
    log_level: str = _RUNTIME_DEFAULTS["log_level"]
    log_debug_sample_rate: float = _RUNTIME_DEFAULTS["log_debug_sample_rate"]
    rate_limit_per_s: int = _RUNTIME_DEFAULTS["rate_limit_per_s"]
    #: Messages one connection may send at once; 0 is one second's worth (the rate).
    rate_limit_burst: int = 0
    max_active_requests: int = _RUNTIME_DEFAULTS["max_active_requests"]
    poller_batch_size: int = _RUNTIME_DEFAULTS["poller_batch_size"]
    #: Shards of the requests' due index per region: enough that at 10,000 async requests a
    #: second no shard's key takes 1,000 WCU/s (docs/benchmarks.md, section 7); more than a
    #: function run without the setting reads (`streamer.config.Settings.due_shards`).
    due_shards: int = 64
    watch_token_ttl_s: int = _RUNTIME_DEFAULTS["watch_token_ttl_s"]
    circuit_window_s: int = _RUNTIME_DEFAULTS["circuit_window_s"]
    circuit_failure_ratio: float = _RUNTIME_DEFAULTS["circuit_failure_ratio"]
    circuit_minimum_calls: int = _RUNTIME_DEFAULTS["circuit_minimum_calls"]
    circuit_open_s: int = _RUNTIME_DEFAULTS["circuit_open_s"]
    #: Items each bucket of an action's circuit counts is spread over: one takes a write a
    #: second from each instance adding to it, so one item serves up to 1,000 instances
    #: running the action at once, a region's default concurrency quota.
    circuit_count_shards: int = _RUNTIME_DEFAULTS["circuit_count_shards"]


@dataclass(frozen=True)
class JwtSettings:
    """How the authorizer verifies tokens: a JWKS URL or a PEM public key (a secret)."""

    issuer: str
    audience: str
    jwks_url: str | None = None
    public_key: pulumi.Input[str] | None = None
    leeway_s: int | None = None


@dataclass(frozen=True)
class AlarmSettings:
    """Thresholds and evaluation of the alarms (components/service_alarms.py); every alarm
    looks at one-minute periods and alarms when `datapoints_to_alarm` of the last
    `evaluation_periods` breach, so one bad minute does not page."""

    #: A function's errors as a percentage of its invocations.
    error_rate_percent: float = 5.0
    #: Invocations in a minute below which the error rate counts as 0 (one error in
    #: two invocations is noise, not an outage).
    min_invocations: int = 10
    #: p99 of an async request's total time, queued to ended, every action together.
    total_duration_p99_ms: int = 300_000
    #: Consecutive minutes with sweeper re-drives before requests count as stuck: a
    #: single re-drive is the sweeper doing its job after a crash.
    stuck_periods: int = 3
    #: Messages in a dead-letter queue above which it alarms.
    dead_letters: int = 0
    #: A function's throttles per minute above which it alarms.
    throttles: int = 0
    evaluation_periods: int = 5
    datapoints_to_alarm: int = 3


@dataclass(frozen=True)
class AlarmSubscription:
    """One subscriber of the stack's alarm topic (`streamer:alarmSubscriptions`)."""

    protocol: str
    endpoint: str


@dataclass(frozen=True)
class Throttle:
    """Stage-wide throttling: the outer limit in front of the per-connection rate limit."""

    burst_limit: int = 500
    rate_limit: float = 1000.0


@dataclass(frozen=True)
class VpcSettings:
    """One region's VPC for the functions (`streamer:vpc.<region>`): docs/deploying.md, "VPC"."""

    vpc_id: str
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    #: Route tables of the subnets, which the DynamoDB gateway endpoint is added to.
    route_table_ids: tuple[str, ...]
    #: An EventBridge interface endpoint in the subnets (else events go through the NAT).
    event_bridge_endpoint: bool = False
    #: The stack's statement that the subnets route to AWS's public regional endpoints
    #: (a NAT gateway): required when the stack spans several regions (`_check_vpc_egress`).
    egress: bool = False


@dataclass(frozen=True)
class StackSettings:
    """Everything one stack is configured with."""

    regions: tuple[str, ...]
    stage_name: str
    jwt: JwtSettings
    allowed_tenants: tuple[str, ...] = ()
    functions: Mapping[str, FunctionSize] = field(default_factory=lambda: dict(DEFAULT_SIZES))
    processor: ProcessorSettings = ProcessorSettings()
    runtime: RuntimeTuning = RuntimeTuning()
    throttle: Throttle = Throttle()
    log_retention_days: int = 30
    tracing: bool = False
    #: Put `Request Completed` / `Failed` / `Cancelled` on the region's bus when requests end.
    lifecycle_events: bool = True
    #: Targets notified besides the region's alarm topic, by region.
    alarm_actions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Subscribers of every region's alarm topic.
    alarm_subscriptions: tuple[AlarmSubscription, ...] = ()
    alarms: AlarmSettings = AlarmSettings()
    deletion_protection: bool = False
    #: Access logs on the WebSocket stages: they need API Gateway's CloudWatch Logs role,
    #: set once per account and region by the bootstrap project (bootstrap/).
    api_gateway_logging: bool = True
    #: The bootstrap stack checked for each region, `{organization}` and `{region}` filled in.
    bootstrap_stack: str = DEFAULT_BOOTSTRAP_STACK
    artifacts_dir: str = "build/lambda"
    #: Signs watch tokens (a secret); without it the `watch` action is refused.
    watch_token_secret: pulumi.Input[str] | None = None
    #: Browser origins that may call the HTTP API (`streamer:cors`); none by default.
    cors: CorsRules = field(default_factory=CorsRules)
    #: How long the HTTP API keeps the authorizer's answer for one token (0: not cached).
    http_authorizer_cache_s: int = 30
    #: The WebSocket API's custom domain (regional, in every region); None: none.
    domain_name: str | None = None
    #: The domain's ACM certificate in each region, by region (`certificate_arns`).
    certificate_arns: Mapping[str, str] = field(default_factory=dict)
    #: The managed Powertools layer given for some regions (`powertools_layer_arns`); the
    #: others look it up (components/powertools.py).
    powertools_layer_arns: Mapping[str, str] = field(default_factory=dict)
    #: How a new version reaches traffic (components/rollout.py): all-at-once, canary, linear.
    rollout: str = "all-at-once"
    rollout_percent: int = 10
    rollout_interval_minutes: int = 5
    #: Let a change replace a table (new key schema or name): its items would be lost.
    allow_table_replacement: bool = False
    #: Create a customer-managed KMS key in each region (components/keys.py).
    customer_managed_key: bool = False
    #: Customer-managed keys given by ARN, by region (`kms_key_arns`).
    kms_key_arns: Mapping[str, str] = field(default_factory=dict)
    #: The functions' VPC, by region; none: Lambda's own network.
    vpc: Mapping[str, VpcSettings] = field(default_factory=dict)
    #: Seconds after which a region whose sweeper wrote no heartbeat counts as stopped,
    #: so the other regions may take over its requests (docs/guarantees.md, "Multi-region").
    heartbeat_stale_s: int = 180
    #: Seconds past a request's due time before another region takes it over.
    takeover_grace_s: int = 30

    @property
    def rollout_settings(self) -> Rollout:
        """`rollout`, `rolloutPercent` and `rolloutIntervalMinutes` together."""
        return Rollout(self.rollout, self.rollout_percent, self.rollout_interval_minutes)

    @property
    def home_region(self) -> str:
        """The region whose provider creates the global tables; the others hold replicas."""
        return self.regions[0]

    def bootstrap_stack_of(self, region: str) -> str:
        """The fully qualified name of `region`'s bootstrap stack."""
        return self.bootstrap_stack.format(organization=pulumi.get_organization(), region=region)

    @classmethod
    def load(cls, config: pulumi.Config, stack: str) -> StackSettings:
        """Read and check the stack's configuration; raises `ConfigError` naming the bad key."""
        regions = tuple(config.require_object("regions"))
        jwt = JwtSettings(
            issuer=config.require("jwtIssuer"),
            audience=config.require("jwtAudience"),
            jwks_url=config.get("jwtJwksUrl"),
            public_key=config.get_secret("jwtPublicKey"),
            leeway_s=config.get_int("jwtLeewayS"),
        )
        sizes = dict(DEFAULT_SIZES)
        for function, given in (config.get_object("functions") or {}).items():
            if function not in sizes:
                raise ConfigError(f"streamer:functions: unknown function {function!r}")
            sizes[function] = _override(sizes[function], given, f"functions.{function}")
        settings = cls(
            regions=regions,
            stage_name=config.get("stageName") or stack,
            jwt=jwt,
            allowed_tenants=tuple(config.get_object("allowedTenants") or ()),
            functions=sizes,
            processor=_override(ProcessorSettings(), config.get_object("processor"), "processor"),
            runtime=_override(RuntimeTuning(), config.get_object("runtime"), "runtime"),
            throttle=_override(Throttle(), config.get_object("throttle"), "throttle"),
            log_retention_days=config.get_int("logRetentionDays") or 30,
            tracing=bool(config.get_bool("tracing")),
            lifecycle_events=bool(config.get_bool("lifecycleEvents", True)),
            alarm_actions={
                region: tuple(arns)
                for region, arns in (config.get_object("alarmActions") or {}).items()
            },
            alarm_subscriptions=_subscriptions(config.get_object("alarmSubscriptions")),
            alarms=_override(AlarmSettings(), config.get_object("alarms"), "alarms"),
            deletion_protection=bool(config.get_bool("deletionProtection")),
            api_gateway_logging=bool(config.get_bool("apiGatewayLogging", True)),
            bootstrap_stack=config.get("bootstrapStack") or DEFAULT_BOOTSTRAP_STACK,
            artifacts_dir=config.get("artifactsDir") or "build/lambda",
            watch_token_secret=config.get_secret("watchTokenSecret"),
            cors=_cors(config.get_object("cors")),
            http_authorizer_cache_s=_int_or(config.get_int("httpAuthorizerCacheS"), 30),
            domain_name=config.get("domainName"),
            certificate_arns=certificate_arns(config.get("certificateArn")),
            powertools_layer_arns=powertools_layer_arns(config.get("powertoolsLayerArn"), regions),
            rollout=config.get("rollout") or "all-at-once",
            rollout_percent=_int_or(config.get_int("rolloutPercent"), 10),
            rollout_interval_minutes=_int_or(config.get_int("rolloutIntervalMinutes"), 5),
            allow_table_replacement=bool(config.get_bool("allowTableReplacement")),
            customer_managed_key=bool(config.get_bool("customerManagedKey")),
            kms_key_arns=kms_key_arns(config.get("kmsKeyArn"), regions),
            vpc=vpc_settings(config.get_object("vpc"), regions),
            heartbeat_stale_s=_int_or(config.get_int("heartbeatStaleS"), 180),
            takeover_grace_s=_int_or(config.get_int("takeoverGraceS"), 30),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Raise `ConfigError` for values AWS would refuse or that cannot work together."""
        if not self.regions or len(set(self.regions)) != len(self.regions):
            raise ConfigError("streamer:regions: give one or more distinct regions")
        for region in self.regions:
            if not _REGION.match(region):
                raise ConfigError(f"streamer:regions: {region!r} is not an AWS region name")
        if not _STAGE.match(self.stage_name):
            raise ConfigError(f"streamer:stageName: {self.stage_name!r} is not a stage name")
        if (self.jwt.jwks_url is None) == (self.jwt.public_key is None):
            raise ConfigError("streamer:jwtJwksUrl or streamer:jwtPublicKey: set exactly one")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ConfigError(
                f"streamer:logRetentionDays: {self.log_retention_days} is not one of "
                f"{sorted(LOG_RETENTION_DAYS)}"
            )
        for function, size in self.functions.items():
            if not (128 <= size.memory_mb <= 10_240 and 1 <= size.timeout_s <= 900):
                raise ConfigError(
                    f"streamer:functions.{function}: Lambda takes 128-10240 MB and 1-900 s"
                )
        router = self.functions["router"]
        if router.timeout_s > API_INTEGRATION_LIMIT_S:
            raise ConfigError(
                f"streamer:functions.router.timeoutS: API Gateway stops waiting after "
                f"{API_INTEGRATION_LIMIT_S} s"
            )
        if self.runtime.sync_timeout_ms >= router.timeout_s * 1000:
            raise ConfigError(
                "streamer:runtime.syncTimeoutMs: must be below the router's timeout so a "
                "slow sync handler is answered with TIMEOUT instead of killed"
            )
        try:
            self.bootstrap_stack_of(self.home_region)
        except (KeyError, IndexError, ValueError) as error:
            raise ConfigError(
                f"streamer:bootstrapStack: {self.bootstrap_stack!r} may use only "
                "{organization} and {region}"
            ) from error
        for region in self.alarm_actions:
            if region not in self.regions:
                raise ConfigError(f"streamer:alarmActions: {region!r} is not a configured region")
        if not 0 <= self.http_authorizer_cache_s <= HTTP_AUTHORIZER_CACHE_LIMIT_S:
            raise ConfigError(
                f"streamer:httpAuthorizerCacheS: {self.http_authorizer_cache_s} is not in "
                f"[0, {HTTP_AUTHORIZER_CACHE_LIMIT_S}]"
            )
        self._check_processor()
        self._check_takeover()
        self._check_vpc_egress()
        self._check_limits()
        self._check_alarms()
        self._check_functions()
        self._check_domain()
        self._check_rollout()
        if self.customer_managed_key and self.kms_key_arns:
            raise ConfigError(
                "streamer:customerManagedKey and streamer:kmsKeyArn: create keys or give them, "
                "not both"
            )

    def _check_vpc_egress(self) -> None:
        # In a multi-region stack a function writes to other regions' replicas (a
        # request's decider). The VPC's DynamoDB gateway endpoint cannot carry those calls:
        # "A gateway endpoint is available only in the Region where you created it", and
        # it does not serve "peered VPCs in other AWS Regions" or a transit gateway
        # (vpc/latest/privatelink/vpc-endpoints-ddb.html). They go to the other region's
        # public endpoint, which subnets reach only through a NAT gateway. The program
        # cannot see the subnets' routes, so the stack must state that they have one.
        if len(self.regions) < 2:
            return
        for region, vpc in self.vpc.items():
            if not vpc.egress:
                raise ConfigError(
                    f"streamer:vpc.{region}.egress: this stack spans {', '.join(self.regions)}, "
                    "so its functions call the other regions' DynamoDB endpoints, which the "
                    "VPC's DynamoDB gateway endpoint does not reach (it serves its own region "
                    "only); route the subnets to a NAT gateway and set egress: true "
                    '(docs/deploying.md, "Multi-region")'
                )

    def _check_takeover(self) -> None:
        # A live region's sweeper heartbeats once per run: a staleness not above the
        # schedule's interval would take over from regions that are running (the
        # runtime refuses it too: streamer.regions.TakeoverSettings).
        if self.heartbeat_stale_s <= SCHEDULE_INTERVAL_S:
            raise ConfigError(
                f"streamer:heartbeatStaleS: {self.heartbeat_stale_s} must exceed the sweeper's "
                f"schedule interval, {SCHEDULE_INTERVAL_S} s"
            )
        if not 0 <= self.takeover_grace_s <= 86_400:
            raise ConfigError(
                f"streamer:takeoverGraceS: {self.takeover_grace_s} is not in [0, 86400]"
            )

    def _check_rollout(self) -> None:
        if self.rollout not in STRATEGIES:
            raise ConfigError(
                f"streamer:rollout: {self.rollout!r} is not one of {', '.join(STRATEGIES)}"
            )
        # CodeDeploy's TimeBasedCanary/TimeBasedLinear take a whole percentage and minutes
        # (API_TimeBasedCanary.html, API_TimeBasedLinear.html); 100 % would be all at once.
        if not 1 <= self.rollout_percent <= 99:
            raise ConfigError(f"streamer:rolloutPercent: {self.rollout_percent} is not in [1, 99]")
        if not 1 <= self.rollout_interval_minutes <= 2880:
            raise ConfigError(
                f"streamer:rolloutIntervalMinutes: {self.rollout_interval_minutes} is not in "
                "[1, 2880] (two days, the longest CodeDeploy waits)"
            )

    def _check_domain(self) -> None:
        if (self.domain_name is None) != (not self.certificate_arns):
            raise ConfigError(
                "streamer:domainName and streamer:certificateArn: set both or neither"
            )
        if self.domain_name is not None and set(self.certificate_arns) != set(self.regions):
            # A regional custom domain needs a certificate in the API's own region
            # (apigateway-regional-api-custom-domain-create).
            raise ConfigError(
                f"streamer:certificateArn: give one certificate in each of {list(self.regions)}; "
                f"got certificates in {sorted(self.certificate_arns)}"
            )

    def _check_limits(self) -> None:
        r = self.runtime
        bounds = {
            "rateLimitPerS": (r.rate_limit_per_s, 0, 1_000_000),
            "rateLimitBurst": (r.rate_limit_burst, 0, 1_000_000),
            "maxActiveRequests": (r.max_active_requests, 0, 1_000_000),
            "pollerBatchSize": (r.poller_batch_size, 1, 1000),
            "dueShards": (r.due_shards, 1, MAX_DUE_SHARDS),
            "circuitWindowS": (r.circuit_window_s, 1, 3600),
            "circuitFailureRatio": (r.circuit_failure_ratio, 0, 1),
            "circuitMinimumCalls": (r.circuit_minimum_calls, 1, 1_000_000),
            "circuitOpenS": (r.circuit_open_s, 1, 3600),
            "circuitCountShards": (r.circuit_count_shards, 1, MAX_CIRCUIT_COUNT_SHARDS),
        }
        _check_bounds("runtime", bounds)

    def _check_functions(self) -> None:
        for function, size in self.functions.items():
            # 0 would stop the function from running at all; Lambda takes up to the
            # account's concurrency (1000 by default) minus the 100 it keeps unreserved.
            if size.reserved_concurrency != UNRESERVED and size.reserved_concurrency < 1:
                raise ConfigError(
                    f"streamer:functions.{function}.reservedConcurrency: give a positive "
                    f"number, or {UNRESERVED} for none"
                )

    def _check_alarms(self) -> None:
        a = self.alarms
        bounds = {
            "errorRatePercent": (a.error_rate_percent, 0, 100),
            "minInvocations": (a.min_invocations, 0, 1_000_000),
            "totalDurationP99Ms": (a.total_duration_p99_ms, 1, 86_400_000),
            "stuckPeriods": (a.stuck_periods, 1, 60),
            "deadLetters": (a.dead_letters, 0, 1_000_000),
            "throttles": (a.throttles, 0, 1_000_000),
            "evaluationPeriods": (a.evaluation_periods, 1, 60),
            "datapointsToAlarm": (a.datapoints_to_alarm, 1, a.evaluation_periods),
        }
        _check_bounds("alarms", bounds)

    def _check_processor(self) -> None:
        p = self.processor
        bounds = {
            "batchSize": (p.batch_size, 1, 10_000),
            "batchWindowS": (p.batch_window_s, 0, 300),
            "parallelizationFactor": (p.parallelization_factor, 1, 10),
            "concurrency": (p.concurrency, 1, 1000),
            # Bounded on purpose: -1 (retry forever) would let one poison record block its shard.
            "maxRetryAttempts": (p.max_retry_attempts, 0, 10_000),
            "maxRecordAgeS": (p.max_record_age_s, 60, 604_800),
        }
        _check_bounds("processor", bounds)


def _cors(given: Any) -> CorsRules:
    if given is not None and not isinstance(given, dict):
        raise ConfigError("streamer:cors: give an object (allowOrigins, allowMethods, ...)")
    try:
        return CorsRules.from_config(given)
    except (InvalidCorsRules, ValueError, TypeError) as error:
        raise ConfigError(f"streamer:cors: {error}") from None


def _subscriptions(given: Any) -> tuple[AlarmSubscription, ...]:
    """`streamer:alarmSubscriptions`: a list of `{protocol, endpoint}`."""
    if given is None:
        return ()
    if not isinstance(given, list):
        raise ConfigError("streamer:alarmSubscriptions: give a list of {protocol, endpoint}")
    found = []
    for index, entry in enumerate(given):
        key = f"streamer:alarmSubscriptions[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"protocol", "endpoint"}:
            raise ConfigError(f"{key}: give exactly protocol and endpoint, got {entry!r}")
        if entry["protocol"] not in SUBSCRIPTION_PROTOCOLS:
            raise ConfigError(
                f"{key}.protocol: {entry['protocol']!r} is not one of "
                f"{sorted(SUBSCRIPTION_PROTOCOLS)}"
            )
        if not isinstance(entry["endpoint"], str) or not entry["endpoint"]:
            raise ConfigError(f"{key}.endpoint: give the address to notify")
        found.append(AlarmSubscription(entry["protocol"], entry["endpoint"]))
    return tuple(found)


def _int_or(value: int | None, default: int) -> int:
    return default if value is None else value


def _check_bounds(section: str, bounds: Mapping[str, tuple[float, float, float]]) -> None:
    """Refuse the first `streamer:<section>.<key>` whose value is outside [low, high]."""
    for key, (value, low, high) in bounds.items():
        if not low <= value <= high:
            raise ConfigError(f"streamer:{section}.{key}: {value} is not in [{low}, {high}]")


def certificate_arns(value: str | None) -> dict[str, str]:
    """`streamer:certificateArn`, one ARN or a list of them, by the region each ARN names."""
    if not value:
        return {}
    arns = json.loads(value) if value.lstrip().startswith("[") else [value]
    by_region: dict[str, str] = {}
    for arn in arns:
        match = _CERTIFICATE_ARN.match(str(arn))
        if match is None:
            raise ConfigError(f"streamer:certificateArn: {arn!r} is not an ACM certificate ARN")
        if match.group(1) in by_region:
            raise ConfigError(f"streamer:certificateArn: two certificates in {match.group(1)}")
        by_region[match.group(1)] = str(arn)
    return by_region


def powertools_layer_arns(value: str | None, regions: tuple[str, ...]) -> dict[str, str]:
    """`streamer:powertoolsLayerArn` by region: a map region -> layer version ARN (regions
    left out look the layer up), or one ARN with `{region}` standing for every region."""
    if not value:
        return {}
    key = "streamer:powertoolsLayerArn"
    if value.lstrip().startswith("{"):
        given = json.loads(value)
        unknown = sorted(set(given) - set(regions))
        if unknown:
            raise ConfigError(f"{key}: {unknown} are not configured regions")
        arns = {region: str(arn) for region, arn in given.items()}
    else:
        arns = {region: value.replace("{region}", region) for region in regions}
    for region, arn in arns.items():
        match = _LAYER_VERSION_ARN.match(arn)
        if match is None:
            raise ConfigError(f"{key}: {arn!r} is not a layer version ARN")
        if match.group(1) != region:
            # A function's layers must be in its region (configuration-layers.html).
            raise ConfigError(f"{key}: {arn!r} is not in {region}, the function's region")
    return arns


def kms_key_arns(value: str | None, regions: tuple[str, ...]) -> dict[str, str]:
    """`streamer:kmsKeyArn` by region: a map region -> key ARN covering every region, or one
    ARN with `{region}` standing for each (a multi-Region key's replicas share their id)."""
    if not value:
        return {}
    key = "streamer:kmsKeyArn"
    if value.lstrip().startswith("{"):
        arns = {region: str(arn) for region, arn in json.loads(value).items()}
    else:
        arns = {region: value.replace("{region}", region) for region in regions}
    if set(arns) != set(regions):
        raise ConfigError(f"{key}: give a key for each of {list(regions)}, got {sorted(arns)}")
    for region, arn in arns.items():
        match = _KMS_KEY_ARN.match(arn)
        if match is None:
            raise ConfigError(f"{key}: {arn!r} is not a KMS key ARN")
        if match.group(1) != region:
            # A table, queue, topic or log group takes a key of its own region only.
            raise ConfigError(f"{key}: {arn!r} is not in {region}")
    return arns


def vpc_settings(given: Any, regions: tuple[str, ...]) -> dict[str, VpcSettings]:
    """`streamer:vpc`: by region, `{vpcId, subnetIds, securityGroupIds, routeTableIds,
    eventBridgeEndpoint, egress}`; every configured region or none."""
    if not given:
        return {}
    if not isinstance(given, dict) or set(given) != set(regions):
        raise ConfigError(f"streamer:vpc: give a VPC for each of {list(regions)}")
    found = {}
    for region, entry in given.items():
        key = f"streamer:vpc.{region}"
        fields = {"vpcId", "subnetIds", "securityGroupIds", "routeTableIds"}
        if not isinstance(entry, dict) or not fields <= set(entry):
            raise ConfigError(f"{key}: give {sorted(fields)} (and eventBridgeEndpoint, egress)")
        unknown = set(entry) - fields - {"eventBridgeEndpoint", "egress"}
        if unknown:
            raise ConfigError(f"{key}: unknown keys {sorted(unknown)}")
        settings = VpcSettings(
            vpc_id=str(entry["vpcId"]),
            subnet_ids=tuple(entry["subnetIds"]),
            security_group_ids=tuple(entry["securityGroupIds"]),
            route_table_ids=tuple(entry["routeTableIds"]),
            event_bridge_endpoint=config_value(
                f"vpc.{region}.eventBridgeEndpoint", entry.get("eventBridgeEndpoint", False), False
            ),
            egress=config_value(f"vpc.{region}.egress", entry.get("egress", False), False),
        )
        _check_vpc(key, settings)
        found[region] = settings
    return found


def _check_vpc(key: str, vpc: VpcSettings) -> None:
    if not _VPC.match(vpc.vpc_id):
        raise ConfigError(f"{key}.vpcId: {vpc.vpc_id!r} is not a VPC id")
    for name, ids, pattern, most in (
        ("subnetIds", vpc.subnet_ids, _SUBNET, MAX_SUBNETS),
        ("securityGroupIds", vpc.security_group_ids, _SECURITY_GROUP, MAX_SECURITY_GROUPS),
        ("routeTableIds", vpc.route_table_ids, _ROUTE_TABLE, 255),
    ):
        if not 1 <= len(ids) <= most:
            raise ConfigError(f"{key}.{name}: give 1 to {most}")
        for value in ids:
            if not pattern.match(str(value)):
                raise ConfigError(f"{key}.{name}: {value!r} is not such an id")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _override(defaults: _Settings, given: Mapping[str, Any] | None, key: str) -> _Settings:
    """`defaults` with the camelCase keys of `given` replaced, refusing unknown keys."""
    by_key = {_camel(f.name): f.name for f in dataclasses.fields(defaults)}
    unknown = set(given or {}) - set(by_key)
    if unknown:
        raise ConfigError(
            f"streamer:{key}: unknown keys {sorted(unknown)}; known: {sorted(by_key)}"
        )
    return dataclasses.replace(
        defaults,
        **{
            by_key[k]: config_value(f"{key}.{k}", value, getattr(defaults, by_key[k]))
            for k, value in (given or {}).items()
        },
    )


def config_value(key: str, value: Any, default: Any) -> Any:
    """`value` given for `streamer:{key}`, read as the kind of its `default`.

    A boolean is true or false, an integer a whole number, a number finite; each may
    also come as text (`"10"`). Anything else raises `ConfigError` naming the key and
    the value, rather than failing later without either, or `bool("false")` being true.
    """
    if isinstance(default, bool):
        text = value.strip().lower() if isinstance(value, str) else None
        if isinstance(value, bool) or text in ("true", "false"):
            return value if isinstance(value, bool) else text == "true"
        raise ConfigError(f"streamer:{key} must be a boolean (true or false), got {value!r}")
    if isinstance(default, int | float) and not isinstance(value, bool):
        try:
            number = float(value) if isinstance(default, float) else _whole(value)
        except (TypeError, ValueError):
            number = None
        if number is not None and math.isfinite(number):
            return number
    if isinstance(default, int):
        raise ConfigError(f"streamer:{key} must be an integer, got {value!r}")
    if isinstance(default, float):
        raise ConfigError(f"streamer:{key} must be a number, got {value!r}")
    return type(default)(value)


def _whole(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int | str):
        return int(value)
    raise TypeError(value)
