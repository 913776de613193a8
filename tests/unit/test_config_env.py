"""Every environment variable reaches its setting (pure: the environment is passed in)."""

from __future__ import annotations

import pytest

from streamer import config
from streamer.config import Settings

EVERY_VARIABLE = {
    config.CONNECTIONS_TABLE: "conns",
    config.REQUESTS_TABLE: "reqs",
    config.SUBSCRIPTIONS_TABLE: "subs",
    config.REGION: "eu-west-1",
    config.APP_MODULE: "my.app",
    config.ASYNC_THRESHOLD_MS: "7000",
    config.SYNC_TIMEOUT_MS: "12000",
    config.PROGRESS_FLUSH_MS: "300",
    config.PROGRESS_IMMEDIATE_PERCENT: "80",
    config.PROGRESS_PERSIST_MS: "2000",
    config.REQUEST_RETENTION_S: "3600",
    config.MAX_ATTEMPTS: "5",
    config.LEASE_MARGIN_S: "40",
    config.PROCESSOR_CONCURRENCY: "4",
    config.MANAGEMENT_ENDPOINT: "https://manage",
    config.WEBSOCKET_URL: "wss://ws",
    config.JWT_PUBLIC_KEY: "PEM",
    config.JWT_JWKS_URL: "https://issuer/jwks",
    config.JWT_ISSUER: "https://issuer",
    config.JWT_AUDIENCE: "streamer",
    config.JWT_LEEWAY_S: "10",
    config.ALLOWED_TENANTS: "t1,t2",
    config.TRACING: "on",
    config.LOG_LEVEL: "warning",
    config.RATE_LIMIT_PER_S: "50",
    config.RATE_LIMIT_BURST: "70",
    config.MAX_ACTIVE_REQUESTS: "9",
    config.WATCH_TOKEN_SECRET: "secret",
    config.WATCH_TOKEN_TTL_S: "600",
    config.TOPIC_RETENTION_S: "60",
    config.EVENT_BUS: "bus",
    config.POLLER_BATCH_SIZE: "7",
    config.DUE_SHARDS: "12",
    config.LOG_DEBUG_SAMPLE_RATE: "0.25",
    config.STAGE: "prod",
    config.CIRCUIT_WINDOW_S: "90",
    config.CIRCUIT_FAILURE_RATIO: "0.4",
    config.CIRCUIT_MINIMUM_CALLS: "11",
    config.CIRCUIT_OPEN_S: "45",
    config.CIRCUIT_COUNT_SHARDS: "3",
    config.REGIONS: "us-east-1, eu-west-1",
    config.TABLE_ENDPOINTS: '{"us-east-1": "http://127.0.0.1:8000"}',
    config.HEARTBEAT_STALE_S: "120",
    config.TAKEOVER_GRACE_S: "15",
    config.SWEEP_INTERVAL_S: "30",
}


def test_every_variable_reaches_its_setting() -> None:
    assert Settings.from_env(EVERY_VARIABLE) == Settings(
        connections_table="conns",
        requests_table="reqs",
        subscriptions_table="subs",
        region="eu-west-1",
        app_module="my.app",
        async_threshold_ms=7000,
        sync_timeout_ms=12000,
        progress_flush_ms=300,
        progress_immediate_percent=80.0,
        progress_persist_ms=2000,
        request_retention_s=3600,
        max_attempts=5,
        lease_margin_s=40,
        processor_concurrency=4,
        management_endpoint="https://manage",
        websocket_url="wss://ws",
        jwt_public_key="PEM",
        jwt_jwks_url="https://issuer/jwks",
        jwt_issuer="https://issuer",
        jwt_audience="streamer",
        jwt_leeway_s=10,
        allowed_tenants=frozenset({"t1", "t2"}),
        tracing=True,
        log_level="WARNING",
        rate_limit_per_s=50,
        rate_limit_burst=70,
        max_active_requests=9,
        watch_token_secret="secret",
        watch_token_ttl_s=600,
        topic_retention_s=60,
        event_bus="bus",
        poller_batch_size=7,
        due_shards=12,
        log_debug_sample_rate=0.25,
        stage="prod",
        circuit_window_s=90,
        circuit_failure_ratio=0.4,
        circuit_minimum_calls=11,
        circuit_open_s=45,
        circuit_count_shards=3,
        regions=("us-east-1", "eu-west-1"),
        table_endpoints={"us-east-1": "http://127.0.0.1:8000"},
        heartbeat_stale_s=120.0,
        takeover_grace_s=15.0,
        sweep_interval_s=30.0,
    )


def test_every_variable_is_listed_for_the_components() -> None:
    assert set(EVERY_VARIABLE) == set(config.ALL) | {config.REGION}


def test_without_an_environment_given_the_process_environment_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(config.MAX_ATTEMPTS, "6")
    assert Settings.from_env().max_attempts == 6


def test_blank_values_take_the_defaults() -> None:
    blanks = {name: "  " for name in EVERY_VARIABLE}
    assert Settings.from_env(blanks) == Settings.from_env({})


def test_the_newer_settings_default_to_their_documented_values() -> None:
    # GIVEN an environment that sets none of them, WHEN settings are read
    settings = Settings.from_env({})

    # THEN debug lines are not sampled, the stage is "default", and the circuit breaker
    # counts over 60 s, opens at half failing after 20 calls, and stays open 30 s
    assert settings.log_debug_sample_rate == 0.0
    assert settings.stage == "default"
    assert (
        settings.circuit_window_s,
        settings.circuit_failure_ratio,
        settings.circuit_minimum_calls,
        settings.circuit_open_s,
    ) == (60, 0.5, 20, 30)
    # and the due index is spread over 4 shards (a deployed stack sets 64), each bucket of
    # circuit counts over one item
    assert settings.due_shards == 4
    assert settings.circuit_count_shards == 1


@pytest.mark.parametrize(
    ("name", "given", "field", "expected"),
    [
        (config.LOG_DEBUG_SAMPLE_RATE, "1.5", "log_debug_sample_rate", 1.0),
        (config.LOG_DEBUG_SAMPLE_RATE, "-0.5", "log_debug_sample_rate", 0.0),
        (config.CIRCUIT_FAILURE_RATIO, "1.5", "circuit_failure_ratio", 1.0),
        (config.CIRCUIT_FAILURE_RATIO, "-1", "circuit_failure_ratio", 0.0),
        (config.CIRCUIT_WINDOW_S, "1", "circuit_window_s", 1),
        (config.CIRCUIT_WINDOW_S, "0", "circuit_window_s", 1),
        (config.CIRCUIT_MINIMUM_CALLS, "1", "circuit_minimum_calls", 1),
        (config.CIRCUIT_MINIMUM_CALLS, "0", "circuit_minimum_calls", 1),
        (config.CIRCUIT_OPEN_S, "1", "circuit_open_s", 1),
        (config.CIRCUIT_OPEN_S, "0", "circuit_open_s", 1),
        (config.DUE_SHARDS, "0", "due_shards", 1),
        (config.DUE_SHARDS, "128", "due_shards", 128),
        (config.DUE_SHARDS, "129", "due_shards", 128),
        (config.CIRCUIT_COUNT_SHARDS, "0", "circuit_count_shards", 1),
        (config.CIRCUIT_COUNT_SHARDS, "49", "circuit_count_shards", 49),
        (config.CIRCUIT_COUNT_SHARDS, "50", "circuit_count_shards", 49),
    ],
)
def test_shares_are_kept_between_0_and_1_and_breaker_counts_at_least_1(
    name: str, given: str, field: str, expected: float
) -> None:
    assert getattr(Settings.from_env({name: given}), field) == expected


def test_a_deployment_without_regions_runs_in_its_own_region_alone() -> None:
    settings = Settings.from_env({config.REGION: "eu-west-1"})
    assert settings.regions == ("eu-west-1",)
    assert settings.table_endpoints == {}


def test_settings_made_without_regions_have_their_own_region_alone() -> None:
    made = Settings(connections_table="c", requests_table="r", subscriptions_table="s", region="x")
    assert made.regions == ("x",)
    both = Settings(
        connections_table="c",
        requests_table="r",
        subscriptions_table="s",
        region="x",
        regions=("y", "x"),
    )
    assert both.regions == ("y", "x")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (config.REGIONS, "us-east-1,us-west-2", "must include the function's own region"),
        (config.TABLE_ENDPOINTS, "[1]", "must be a JSON object of region to URL"),
        (config.TABLE_ENDPOINTS, "{not json", "must be a JSON object of region to URL"),
        (config.TABLE_ENDPOINTS, '{"us-east-1": 8000}', "must be a JSON object of region to URL"),
        (config.TABLE_ENDPOINTS, '{"us-east-1": ""}', "must be a JSON object of region to URL"),
        (config.HEARTBEAT_STALE_S, "soon", "must be a number"),
        (config.HEARTBEAT_STALE_S, "45", "heartbeat_stale_s must exceed sweep_interval_s"),
    ],
)
def test_a_malformed_region_setting_names_its_variable_and_value(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(config.ConfigError, match=message) as raised:
        Settings.from_env({config.REGION: "eu-west-1", name: value})
    assert name in str(raised.value) and value in str(raised.value)


def test_takeover_times_default_to_the_documented_recovery_bound() -> None:
    from streamer.regions import recovery_bound_s

    takeover = Settings.from_env({}).takeover
    # The processor's 900 s timeout plus the 30 s lease margin, 30 s of grace,
    # a heartbeat stale after 180 s, a sweep every 60 s (docs/guarantees.md).
    assert (takeover.lease_s, takeover.grace_s) == (930, 30.0)
    assert (takeover.heartbeat_stale_s, takeover.sweep_interval_s) == (180.0, 60.0)
    assert recovery_bound_s(takeover) == 1020


def test_the_lease_of_the_recovery_bound_is_the_processor_s_timeout_in_the_catalog() -> None:
    from streamer import catalog

    assert catalog.FUNCTIONS["processor"].timeout_s == config.PROCESSOR_TIMEOUT_S
