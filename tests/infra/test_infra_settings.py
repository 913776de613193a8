"""Stack configuration: defaults from the runtime, and values AWS would refuse caught early."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pulumi
import pytest

from components.functions import environment
from components.settings import (
    ConfigError,
    FunctionSize,
    JwtSettings,
    ProcessorSettings,
    RuntimeTuning,
    StackSettings,
    VpcSettings,
)
from streamer import config

from .conftest import run_stack

pytestmark = pytest.mark.infra

VALID = StackSettings(
    regions=("us-east-1",),
    stage_name="dev",
    jwt=JwtSettings(issuer="https://issuer/", audience="aud", jwks_url="https://issuer/jwks"),
)


def with_(**changes) -> StackSettings:
    return dataclasses.replace(VALID, **changes)


#: A VPC whose subnets are stated to have a NAT route.
IN_VPC = VpcSettings(
    vpc_id="vpc-0a1",
    subnet_ids=("subnet-0a1",),
    security_group_ids=("sg-0a1",),
    route_table_ids=("rtb-0a1",),
    egress=True,
)


def test_a_multi_region_stack_in_a_vpc_with_stated_egress_and_the_default_times_passes() -> None:
    # GIVEN two regions, each in a VPC stated to have a NAT route, and the default times
    settings = with_(
        regions=("us-east-1", "eu-west-1"), vpc={"us-east-1": IN_VPC, "eu-west-1": IN_VPC}
    )

    # WHEN they are checked  THEN nothing is refused, and the times are 180 s and 30 s
    settings.check()
    assert (settings.heartbeat_stale_s, settings.takeover_grace_s) == (180, 30)


def test_runtime_defaults_are_the_runtimes_own() -> None:
    # GIVEN no runtime configuration  WHEN the defaults are read
    tuning, processor = RuntimeTuning(), ProcessorSettings()

    # THEN they are streamer.config's, so the two cannot drift apart
    assert tuning.async_threshold_ms == config.Settings.async_threshold_ms
    assert tuning.sync_timeout_ms == config.Settings.sync_timeout_ms
    assert tuning.max_attempts == config.Settings.max_attempts
    assert tuning.app_module == config.DEFAULT_APP
    assert processor.concurrency == config.Settings.processor_concurrency


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        (with_(regions=()), "streamer:regions"),
        (with_(regions=("us-east-1", "us-east-1")), "streamer:regions"),
        (with_(regions=("mars-1",)), "streamer:regions"),
        (with_(stage_name="no spaces"), "streamer:stageName"),
        (
            with_(jwt=JwtSettings(issuer="i", audience="a", jwks_url="u", public_key="k")),
            "exactly one",
        ),
        (with_(jwt=JwtSettings(issuer="i", audience="a")), "exactly one"),
        (with_(log_retention_days=10), "streamer:logRetentionDays"),
        (
            with_(functions={**VALID.functions, "router": FunctionSize(512, 60)}),
            "streamer:functions.router.timeoutS",
        ),
        (
            with_(functions={**VALID.functions, "processor": FunctionSize(1024, 901)}),
            "streamer:functions.processor",
        ),
        (with_(runtime=RuntimeTuning(sync_timeout_ms=29_000)), "streamer:runtime.syncTimeoutMs"),
        (with_(processor=ProcessorSettings(parallelization_factor=11)), "parallelizationFactor"),
        (with_(processor=ProcessorSettings(max_retry_attempts=-1)), "maxRetryAttempts"),
        (with_(processor=ProcessorSettings(max_record_age_s=-1)), "maxRecordAgeS"),
        (with_(alarm_actions={"eu-west-1": ("arn:sns",)}), "streamer:alarmActions"),
        (with_(runtime=RuntimeTuning(rate_limit_per_s=-1)), "streamer:runtime.rateLimitPerS"),
        (with_(runtime=RuntimeTuning(rate_limit_burst=-5)), "streamer:runtime.rateLimitBurst"),
        (with_(runtime=RuntimeTuning(poller_batch_size=0)), "streamer:runtime.pollerBatchSize"),
        (
            # 1 state item and two buckets of 50 items: past BatchGetItem's 100 keys.
            with_(runtime=RuntimeTuning(circuit_count_shards=50)),
            "streamer:runtime.circuitCountShards",
        ),
        (with_(bootstrap_stack="{org}/streamer-bootstrap/{region}"), "streamer:bootstrapStack"),
        (with_(heartbeat_stale_s=60), "streamer:heartbeatStaleS"),
        (with_(takeover_grace_s=-1), "streamer:takeoverGraceS"),
        (
            with_(
                regions=("us-east-1", "eu-west-1"),
                vpc={"us-east-1": IN_VPC, "eu-west-1": dataclasses.replace(IN_VPC, egress=False)},
            ),
            "streamer:vpc.eu-west-1.egress",
        ),
    ],
)
def test_unworkable_settings_are_refused_naming_the_key(settings: StackSettings, key: str) -> None:
    # GIVEN settings AWS would refuse or that cannot work together
    # WHEN they are checked  THEN the error names the configuration key
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        settings.check()


def test_the_program_checks_its_configuration(artifacts_dir: Path) -> None:
    # GIVEN dev with an unknown processor key  WHEN the program runs
    # THEN it stops before creating anything, naming the key
    with pytest.raises(ConfigError, match=r"streamer:processor: unknown keys \['batchsize'\]"):
        run_stack("dev", artifacts_dir, overrides={"processor": {"batchsize": 5}})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("functions", {"router": {"memory": 1024}}, r"streamer:functions\.router: unknown keys"),
        ("functions", {"worker": {"memoryMb": 1024}}, r"unknown function 'worker'"),
        ("throttle", {"burst": 5}, r"streamer:throttle: unknown keys \['burst'\]"),
    ],
)
def test_misspelt_keys_are_refused(
    artifacts_dir: Path, key: str, value: dict, message: str
) -> None:
    # GIVEN dev with a misspelt nested key  WHEN the program runs
    # THEN it stops, naming the key, instead of silently using the default
    with pytest.raises(ConfigError, match=message):
        run_stack("dev", artifacts_dir, overrides={key: value})


def test_allowed_tenants_reach_the_authorizer_as_a_list() -> None:
    # GIVEN two allowed tenants  WHEN the authorizer's environment is built
    env = environment("authorizer", with_(allowed_tenants=("t1", "t2")), {})

    # THEN they are comma-separated, as the runtime splits them
    assert env[config.ALLOWED_TENANTS] == "t1,t2"
    assert config.Settings.from_env(
        {config.ALLOWED_TENANTS: env[config.ALLOWED_TENANTS]}
    ).allowed_tenants == frozenset({"t1", "t2"})


def test_the_rate_limit_burst_reaches_the_router(artifacts_dir: Path) -> None:
    # GIVEN dev with a bucket of 50 messages refilling at 10 a second
    runtime = {"rateLimitPerS": 10, "rateLimitBurst": 50}
    plan = run_stack("dev", artifacts_dir, overrides={"runtime": runtime})

    # WHEN the router's environment is read by the runtime
    [router] = [f for f in plan.of_type("aws:lambda/function:Function") if "router" in f.name]
    settings = config.Settings.from_env(router.inputs["environment"]["variables"])

    # THEN its limit is that bucket; by default the bucket holds one second's worth
    assert (settings.rate_limit_per_s, settings.rate_limit_burst) == (10, 50)
    names = {"connections": "c", "requests": "r", "subscriptions": "s"}
    default = environment("router", with_(), names)
    assert config.Settings.from_env(default).rate_limit_burst is None


def test_the_poller_batch_size_reaches_the_poller(artifacts_dir: Path) -> None:
    # GIVEN dev polling 5 external jobs at once
    plan = run_stack("dev", artifacts_dir, overrides={"runtime": {"pollerBatchSize": 5}})

    # WHEN the poller's environment is read by the runtime  THEN that is its batch
    [poller] = [f for f in plan.of_type("aws:lambda/function:Function") if "poller" in f.name]
    settings = config.Settings.from_env(poller.inputs["environment"]["variables"])
    assert settings.poller_batch_size == 5


def test_lifecycle_events_take_a_boolean(artifacts_dir: Path) -> None:
    # GIVEN dev with `lifecycleEvents` set to something that is not a boolean
    # WHEN the program runs  THEN it stops naming the key instead of guessing on or off
    with pytest.raises(pulumi.ConfigTypeError, match=r"streamer:lifecycleEvents"):
        run_stack("dev", artifacts_dir, overrides={"lifecycleEvents": "maybe"})
