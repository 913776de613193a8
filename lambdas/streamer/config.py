"""Configuration: every environment variable the runtime reads, named once.

The Pulumi components set these names on the functions and the local stack
sets them for the entry points it calls; both import them from here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from streamer.circuit import MAX_COUNT_SHARDS as MAX_CIRCUIT_COUNT_SHARDS
from streamer.keys import MAX_DUE_SHARDS
from streamer.regions import TakeoverSettings

CONNECTIONS_TABLE = "STREAMER_CONNECTIONS_TABLE"
REQUESTS_TABLE = "STREAMER_REQUESTS_TABLE"
SUBSCRIPTIONS_TABLE = "STREAMER_SUBSCRIPTIONS_TABLE"
APP_MODULE = "STREAMER_APP"
ASYNC_THRESHOLD_MS = "STREAMER_ASYNC_THRESHOLD_MS"
SYNC_TIMEOUT_MS = "STREAMER_SYNC_TIMEOUT_MS"
PROGRESS_FLUSH_MS = "STREAMER_PROGRESS_FLUSH_MS"
PROGRESS_IMMEDIATE_PERCENT = "STREAMER_PROGRESS_IMMEDIATE_PERCENT"
PROGRESS_PERSIST_MS = "STREAMER_PROGRESS_PERSIST_MS"
REQUEST_RETENTION_S = "STREAMER_REQUEST_RETENTION_S"
MAX_ATTEMPTS = "STREAMER_MAX_ATTEMPTS"
LEASE_MARGIN_S = "STREAMER_LEASE_MARGIN_S"
PROCESSOR_CONCURRENCY = "STREAMER_PROCESSOR_CONCURRENCY"
MANAGEMENT_ENDPOINT = "STREAMER_MANAGEMENT_ENDPOINT"
#: The WebSocket API's URL, handed to HTTP clients that start async requests.
WEBSOCKET_URL = "STREAMER_WEBSOCKET_URL"
JWT_PUBLIC_KEY = "STREAMER_JWT_PUBLIC_KEY"
JWT_JWKS_URL = "STREAMER_JWT_JWKS_URL"
JWT_ISSUER = "STREAMER_JWT_ISSUER"
JWT_AUDIENCE = "STREAMER_JWT_AUDIENCE"
JWT_LEEWAY_S = "STREAMER_JWT_LEEWAY_S"
ALLOWED_TENANTS = "STREAMER_ALLOWED_TENANTS"
RATE_LIMIT_PER_S = "STREAMER_RATE_LIMIT_PER_S"
RATE_LIMIT_BURST = "STREAMER_RATE_LIMIT_BURST"
MAX_ACTIVE_REQUESTS = "STREAMER_MAX_ACTIVE_REQUESTS"
WATCH_TOKEN_SECRET = "STREAMER_WATCH_TOKEN_SECRET"
WATCH_TOKEN_TTL_S = "STREAMER_WATCH_TOKEN_TTL_S"
TOPIC_RETENTION_S = "STREAMER_TOPIC_RETENTION_S"
EVENT_BUS = "STREAMER_EVENT_BUS"
POLLER_BATCH_SIZE = "STREAMER_POLLER_BATCH_SIZE"
#: Partition key values the requests' due index is spread over, per region (`streamer.keys`).
DUE_SHARDS = "STREAMER_DUE_SHARDS"
#: The circuit breaker of each action (`streamer.circuit`).
CIRCUIT_WINDOW_S = "STREAMER_CIRCUIT_WINDOW_S"
CIRCUIT_FAILURE_RATIO = "STREAMER_CIRCUIT_FAILURE_RATIO"
CIRCUIT_MINIMUM_CALLS = "STREAMER_CIRCUIT_MINIMUM_CALLS"
CIRCUIT_OPEN_S = "STREAMER_CIRCUIT_OPEN_S"
CIRCUIT_COUNT_SHARDS = "STREAMER_CIRCUIT_COUNT_SHARDS"
#: The EventBridge detail-type whose events the publish function delivers.
NOTIFICATION_DETAIL_TYPE = "Real-time Notification"
#: The regions of the deployment, comma-separated (`streamer.regions`); default: the own only.
REGIONS = "STREAMER_REGIONS"
#: JSON object {region: DynamoDB endpoint URL} for regions whose endpoint is not the SDK's.
TABLE_ENDPOINTS = "STREAMER_TABLE_ENDPOINTS"
#: Seconds after which a region's sweeper heartbeat is stale: its requests may be taken over.
HEARTBEAT_STALE_S = "STREAMER_HEARTBEAT_STALE_S"
#: Seconds past a request's due time before another region takes it over.
TAKEOVER_GRACE_S = "STREAMER_TAKEOVER_GRACE_S"
#: The sweeper's schedule interval, in seconds (the recovery bound counts it).
SWEEP_INTERVAL_S = "STREAMER_SWEEP_INTERVAL_S"
TRACING = "STREAMER_TRACING"
LOG_LEVEL = "STREAMER_LOG_LEVEL"
#: The share of invocations (0 to 1) whose DEBUG lines are written, whatever LOG_LEVEL says.
LOG_DEBUG_SAMPLE_RATE = "STREAMER_LOG_DEBUG_SAMPLE_RATE"
#: The deployment's stage (the stack), the `stage` dimension of every metric.
STAGE = "STREAMER_STAGE"
# Set by Lambda itself; the origin region of requests and the stream filter.
REGION = "AWS_REGION"

#: Every variable a function may be given, for the components' tests.
ALL = (
    CONNECTIONS_TABLE,
    REQUESTS_TABLE,
    SUBSCRIPTIONS_TABLE,
    APP_MODULE,
    ASYNC_THRESHOLD_MS,
    SYNC_TIMEOUT_MS,
    PROGRESS_FLUSH_MS,
    PROGRESS_IMMEDIATE_PERCENT,
    PROGRESS_PERSIST_MS,
    REQUEST_RETENTION_S,
    MAX_ATTEMPTS,
    LEASE_MARGIN_S,
    PROCESSOR_CONCURRENCY,
    MANAGEMENT_ENDPOINT,
    WEBSOCKET_URL,
    JWT_PUBLIC_KEY,
    JWT_JWKS_URL,
    JWT_ISSUER,
    JWT_AUDIENCE,
    JWT_LEEWAY_S,
    ALLOWED_TENANTS,
    TRACING,
    LOG_LEVEL,
    LOG_DEBUG_SAMPLE_RATE,
    STAGE,
    RATE_LIMIT_PER_S,
    RATE_LIMIT_BURST,
    MAX_ACTIVE_REQUESTS,
    WATCH_TOKEN_SECRET,
    WATCH_TOKEN_TTL_S,
    TOPIC_RETENTION_S,
    EVENT_BUS,
    POLLER_BATCH_SIZE,
    DUE_SHARDS,
    CIRCUIT_WINDOW_S,
    CIRCUIT_FAILURE_RATIO,
    CIRCUIT_MINIMUM_CALLS,
    CIRCUIT_OPEN_S,
    CIRCUIT_COUNT_SHARDS,
    REGIONS,
    TABLE_ENDPOINTS,
    HEARTBEAT_STALE_S,
    TAKEOVER_GRACE_S,
    SWEEP_INTERVAL_S,
)

DEFAULT_APP = "streamer.demo"

#: API Gateway refuses WebSocket frames over 128 KiB.
MAX_MESSAGE_BYTES = 128 * 1024
#: A handler's serialised result must leave room for the envelope under 128 KiB.
MAX_RESULT_BYTES = 100 * 1024
#: Connection records outlive API Gateway's 2-hour maximum by a margin.
CONNECTION_TTL_S = 2 * 3600 + 600
#: Time a PENDING request may wait for the stream processor before the
#: sweeper nudges it again (its record was lost or the mapping was down).
PICKUP_TIMEOUT_MS = 120_000
#: The processor function's timeout, the catalog's (`catalog.FUNCTIONS`, not imported here:
#: every cold start would load it): Lambda's longest, "900 seconds (15 minutes)"
#: (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html). A claim's
#: lease is the invocation's remaining time plus the lease margin (`entry.processor`), so
#: a request's due time is at most this plus the margin after its last write.
PROCESSOR_TIMEOUT_S = 900


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """An environment variable holds a value of the wrong kind; the message names both."""


def parse_regions(name: str, value: str | None, own: str) -> tuple[str, ...]:
    """The comma-separated regions in `value` (None: `own` alone), which must include `own`."""
    if value is None:
        return (own,)
    regions = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if own not in regions:
        raise ConfigError(f"{name} must include the function's own region {own!r}, got {value!r}")
    return regions


def parse_endpoints(name: str, value: str | None) -> dict[str, str]:
    """`value` as a JSON object of region to endpoint URL (None: none), or `ConfigError`."""
    if value is None:
        return {}
    refused = ConfigError(f"{name} must be a JSON object of region to URL, got {value!r}")
    try:
        endpoints = json.loads(value)
    except ValueError:
        raise refused from None
    # A JSON object's keys are strings; its values must be non-empty ones.
    if not isinstance(endpoints, dict) or not all(
        isinstance(url, str) and url for url in endpoints.values()
    ):
        raise refused
    return endpoints


def parse_int(name: str, value: str) -> int:
    """`value` of the variable `name` as an integer, or `ConfigError` naming both."""
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def parse_float(name: str, value: str) -> float:
    """`value` of the variable `name` as a finite number, or `ConfigError` naming both."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    return number


def parse_bool(name: str, value: str) -> bool:
    """`value` of the variable `name` as a boolean (1/0, true/false, yes/no, on/off)."""
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(
        f"{name} must be a boolean (true or false, 1 or 0, yes or no, on or off), got {value!r}"
    )


@dataclass(frozen=True)
class Settings:
    """The runtime's configuration, read from the environment once per process."""

    connections_table: str
    requests_table: str
    subscriptions_table: str
    region: str
    app_module: str = DEFAULT_APP
    async_threshold_ms: int = 5000
    sync_timeout_ms: int = 25000
    progress_flush_ms: int = 200
    progress_immediate_percent: float = 90.0
    progress_persist_ms: int = 1000
    request_retention_s: int = 7 * 24 * 3600
    max_attempts: int = 3
    lease_margin_s: int = 30
    processor_concurrency: int = 8
    management_endpoint: str | None = None
    websocket_url: str | None = None
    jwt_public_key: str | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: int = 30
    allowed_tenants: frozenset[str] | None = None
    tracing: bool = False
    log_level: str = "INFO"
    #: The share of invocations, 0 to 1, whose DEBUG lines are written (`streamer.logs`).
    log_debug_sample_rate: float = 0.0
    #: The `stage` dimension of every metric (`streamer.metrics`).
    stage: str = "default"
    #: Messages per connection per second, refilling a token bucket; 0 is no limit.
    rate_limit_per_s: int = 20
    #: The bucket's size: messages a connection may send at once. None: one second's worth.
    rate_limit_burst: int | None = None
    #: Async requests one user may have not yet ended; 0 is no limit.
    max_active_requests: int = 20
    watch_token_secret: str | None = None
    watch_token_ttl_s: int = 1800
    #: How long a topic's last notification is kept for late subscribers; 0 keeps none.
    topic_retention_s: int = 24 * 3600
    #: EventBridge bus (name or ARN) of the lifecycle events; None publishes none.
    event_bus: str | None = None
    #: External jobs the poller polls at once.
    poller_batch_size: int = 20
    #: Shards of the requests' due index per region, 1 to `keys.MAX_DUE_SHARDS`. Few
    #: here, for a function run without the stack's setting (the local stack: its sweeper
    #: and poller query every shard each run); a deployed stack gives `runtime.dueShards`.
    due_shards: int = 4
    #: Seconds over which an action's failures are counted for its circuit breaker.
    circuit_window_s: int = 60
    #: Failures / calls over the window that open an action's circuit; 0 turns the breaker off.
    circuit_failure_ratio: float = 0.5
    #: Calls over the window below which a circuit never opens.
    circuit_minimum_calls: int = 20
    #: Seconds an open circuit refuses requests before trial runs go through.
    circuit_open_s: int = 30
    #: Items each bucket of an action's circuit counts is spread over, 1 to
    #: `circuit.MAX_COUNT_SHARDS` (`circuit.Policy.count_shards`).
    circuit_count_shards: int = 1
    #: Every region of the deployment (`streamer.regions`), the own one included.
    regions: tuple[str, ...] = ()
    #: The DynamoDB endpoint of each region whose endpoint is not the SDK's default.
    table_endpoints: Mapping[str, str] = field(default_factory=dict, hash=False)
    #: Seconds after which another region's heartbeat is stale.
    heartbeat_stale_s: float = 180.0
    #: Seconds past a request's due time before another region takes it over.
    takeover_grace_s: float = 30.0
    #: The sweeper's schedule interval, in seconds.
    sweep_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.regions:
            object.__setattr__(self, "regions", (self.region,))

    @property
    def takeover(self) -> TakeoverSettings:
        """The times that bound another region's takeover of this region's requests.

        A request is due at most a lease after its last write: the processor's
        timeout plus the lease margin, or the pickup timeout of a PENDING one.
        """
        lease_s = max(PROCESSOR_TIMEOUT_S + self.lease_margin_s, PICKUP_TIMEOUT_MS / 1000)
        try:
            return TakeoverSettings(
                lease_s=lease_s,
                sweep_interval_s=self.sweep_interval_s,
                grace_s=self.takeover_grace_s,
                heartbeat_stale_s=self.heartbeat_stale_s,
            )
        except ValueError as error:
            raise ConfigError(
                f"{HEARTBEAT_STALE_S}={self.heartbeat_stale_s} and "
                f"{SWEEP_INTERVAL_S}={self.sweep_interval_s}: {error}"
            ) from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from `env` (default `os.environ`); missing or blank names take
        defaults, a malformed number or boolean raises `ConfigError` naming the variable."""
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, default: int) -> int:
            value = text(name)
            return parse_int(name, value) if value is not None else default

        def decimal(name: str, default: float) -> float:
            value = text(name)
            return parse_float(name, value) if value is not None else default

        def flag(name: str, default: bool) -> bool:
            value = text(name)
            return parse_bool(name, value) if value is not None else default

        tenants = text(ALLOWED_TENANTS)
        region = text(REGION) or text("AWS_DEFAULT_REGION") or "us-east-1"
        settings = cls(
            connections_table=text(CONNECTIONS_TABLE) or "streamer-connections",
            requests_table=text(REQUESTS_TABLE) or "streamer-requests",
            subscriptions_table=text(SUBSCRIPTIONS_TABLE) or "streamer-subscriptions",
            region=region,
            app_module=text(APP_MODULE) or DEFAULT_APP,
            async_threshold_ms=number(ASYNC_THRESHOLD_MS, 5000),
            sync_timeout_ms=number(SYNC_TIMEOUT_MS, 25000),
            progress_flush_ms=number(PROGRESS_FLUSH_MS, 200),
            progress_immediate_percent=decimal(PROGRESS_IMMEDIATE_PERCENT, 90.0),
            progress_persist_ms=number(PROGRESS_PERSIST_MS, 1000),
            request_retention_s=number(REQUEST_RETENTION_S, 7 * 24 * 3600),
            max_attempts=number(MAX_ATTEMPTS, 3),
            lease_margin_s=number(LEASE_MARGIN_S, 30),
            processor_concurrency=number(PROCESSOR_CONCURRENCY, 8),
            management_endpoint=text(MANAGEMENT_ENDPOINT),
            websocket_url=text(WEBSOCKET_URL),
            jwt_public_key=text(JWT_PUBLIC_KEY),
            jwt_jwks_url=text(JWT_JWKS_URL),
            jwt_issuer=text(JWT_ISSUER),
            jwt_audience=text(JWT_AUDIENCE),
            jwt_leeway_s=number(JWT_LEEWAY_S, 30),
            allowed_tenants=(
                frozenset(t.strip() for t in tenants.split(",") if t.strip()) if tenants else None
            ),
            tracing=flag(TRACING, False),
            log_level=(text(LOG_LEVEL) or "INFO").upper(),
            log_debug_sample_rate=min(max(0.0, decimal(LOG_DEBUG_SAMPLE_RATE, 0.0)), 1.0),
            stage=text(STAGE) or "default",
            rate_limit_per_s=min(max(0, number(RATE_LIMIT_PER_S, 20)), 1_000_000),
            rate_limit_burst=max(0, number(RATE_LIMIT_BURST, 0)) or None,
            max_active_requests=number(MAX_ACTIVE_REQUESTS, 20),
            watch_token_secret=text(WATCH_TOKEN_SECRET),
            watch_token_ttl_s=number(WATCH_TOKEN_TTL_S, 1800),
            topic_retention_s=number(TOPIC_RETENTION_S, 24 * 3600),
            event_bus=text(EVENT_BUS),
            poller_batch_size=max(1, number(POLLER_BATCH_SIZE, 20)),
            due_shards=min(max(1, number(DUE_SHARDS, 4)), MAX_DUE_SHARDS),
            circuit_window_s=max(1, number(CIRCUIT_WINDOW_S, 60)),
            circuit_failure_ratio=min(max(0.0, decimal(CIRCUIT_FAILURE_RATIO, 0.5)), 1.0),
            circuit_minimum_calls=max(1, number(CIRCUIT_MINIMUM_CALLS, 20)),
            circuit_open_s=max(1, number(CIRCUIT_OPEN_S, 30)),
            circuit_count_shards=min(
                max(1, number(CIRCUIT_COUNT_SHARDS, 1)), MAX_CIRCUIT_COUNT_SHARDS
            ),
            regions=parse_regions(REGIONS, text(REGIONS), region),
            table_endpoints=parse_endpoints(TABLE_ENDPOINTS, text(TABLE_ENDPOINTS)),
            heartbeat_stale_s=decimal(HEARTBEAT_STALE_S, 180.0),
            takeover_grace_s=decimal(TAKEOVER_GRACE_S, 30.0),
            sweep_interval_s=decimal(SWEEP_INTERVAL_S, 60.0),
        )
        settings.takeover  # noqa: B018 (a malformed combination is refused at start, not mid-sweep)
        return settings
