"""Functions: the catalog's, on arm64 / Python 3.12, with the shared code and layers, the
environment the runtime reads, and invoked by what the catalog says."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.functions import (
    HEARTBEAT_STALE_S,
    MULTI_REGION_VARIABLES,
    STACK_REGIONS,
    SWEEP_INTERVAL_S,
    TAKEOVER_GRACE_S,
)
from components.package import Artifacts
from components.plan import SECRET, Plan, managed_powertools_arn
from components.settings import ConfigError
from local.event_source_mapping import MappingConfig
from local.wiring import function_specs
from streamer import catalog, config
from streamer.catalog import Trigger

from .conftest import run_stack
from .graph import PROJECT, alias, environment, function, functions, grants

pytestmark = pytest.mark.infra

#: Variable groups, also read by the HTTP API's test. Every function gets the log
#: settings, and the regions and takeover times (issue 16).
COMMON = {
    config.LOG_LEVEL,
    config.LOG_DEBUG_SAMPLE_RATE,
    config.STAGE,
    config.TRACING,
} | MULTI_REGION_VARIABLES
TABLES = {config.CONNECTIONS_TABLE, config.REQUESTS_TABLE, config.SUBSCRIPTIONS_TABLE}
REQUEST_TUNING = {
    config.APP_MODULE,
    config.ASYNC_THRESHOLD_MS,
    config.SYNC_TIMEOUT_MS,
    config.PROGRESS_FLUSH_MS,
    config.REQUEST_RETENTION_S,
    config.MAX_ATTEMPTS,
    config.LEASE_MARGIN_S,
    config.PROCESSOR_CONCURRENCY,
    config.DUE_SHARDS,
    config.CIRCUIT_WINDOW_S,
    config.CIRCUIT_FAILURE_RATIO,
    config.CIRCUIT_MINIMUM_CALLS,
    config.CIRCUIT_OPEN_S,
    config.CIRCUIT_COUNT_SHARDS,
}
#: The variable names each function gets when the JWKS URL is configured.
ENVIRONMENT = {
    "authorizer": COMMON | {config.JWT_ISSUER, config.JWT_AUDIENCE, config.JWT_JWKS_URL},
    "connect": COMMON | TABLES,
    "disconnect": COMMON | TABLES,
    "router": COMMON
    | TABLES
    | REQUEST_TUNING
    | {config.RATE_LIMIT_PER_S, config.RATE_LIMIT_BURST}
    | {config.MAX_ACTIVE_REQUESTS, config.WATCH_TOKEN_TTL_S}
    | {config.EVENT_BUS},
    "processor": COMMON | TABLES | REQUEST_TUNING | {config.EVENT_BUS},
    "sweeper": COMMON | TABLES | REQUEST_TUNING | {config.EVENT_BUS},
    "poller": COMMON | TABLES | REQUEST_TUNING | {config.EVENT_BUS, config.POLLER_BATCH_SIZE},
    "http": COMMON
    | TABLES
    | REQUEST_TUNING
    | {config.RATE_LIMIT_PER_S, config.RATE_LIMIT_BURST}
    | {config.MAX_ACTIVE_REQUESTS, config.WATCH_TOKEN_TTL_S}
    | {config.WEBSOCKET_URL},
    "publish": COMMON | TABLES | {config.TOPIC_RETENTION_S},
}
#: Optional settings neither stack file configures: no function gets these variables.
UNCONFIGURED = {
    config.JWT_PUBLIC_KEY,
    config.JWT_LEEWAY_S,
    config.ALLOWED_TENANTS,
    config.WATCH_TOKEN_SECRET,
}
REGIONS = [("dev", "us-east-1"), ("prod", "us-east-1"), ("prod", "eu-west-1")]


@pytest.mark.parametrize(("stack", "region"), REGIONS)
@pytest.mark.parametrize("name", sorted(catalog.FUNCTIONS))
def test_function_runs_the_shared_code_on_arm64_python312(
    request: pytest.FixtureRequest, artifacts_dir: Path, stack: str, region: str, name: str
) -> None:
    # GIVEN one function of one region
    plan: Plan = request.getfixturevalue(stack)
    fn = function(plan, region, name)
    layers = [plan.named(f"{PROJECT}-{region}-{layer}") for layer in ("dependencies", "tracing")]
    artifacts = Artifacts.load(artifacts_dir)

    # WHEN its inputs are read
    inputs = fn.inputs

    # THEN it is Python 3.12 on arm64 with its entry point, the code archive, the dependency
    # layer and (the stacks trace) the tracing layer, traced by X-Ray, logging to its own group
    assert inputs["runtime"] == "python3.12"
    assert inputs["architectures"] == ["arm64"]
    assert inputs["handler"] == catalog.FUNCTIONS[name].handler
    assert inputs["code"] == "archive:code.zip"
    assert inputs["codeSha256"] == artifacts.code.sha256
    dependencies, tracing = (layer.outputs["arn"] for layer in layers)
    assert inputs["layers"] == [managed_powertools_arn(region), dependencies, tracing]
    for layer, archive in zip(layers, (artifacts.layer, artifacts.tracing_layer), strict=True):
        assert layer.inputs["compatibleRuntimes"] == ["python3.12"]
        assert layer.inputs["compatibleArchitectures"] == ["arm64"]
        assert layer.inputs["sourceCodeHash"] == archive.sha256
        assert layer.inputs["code"] == f"archive:{archive.path.name}"
    assert inputs["tracingConfig"] == {"mode": "Active"}
    logs = plan.named(f"{PROJECT}-{region}-{name}-logs")
    assert inputs["loggingConfig"]["logGroup"] == logs.outputs["name"]
    assert logs.inputs["retentionInDays"] == (14 if stack == "dev" else 90)


@pytest.mark.parametrize(("stack", "region"), REGIONS)
@pytest.mark.parametrize("name", sorted(catalog.FUNCTIONS))
def test_function_gets_the_variables_the_runtime_reads(
    request: pytest.FixtureRequest, stack: str, region: str, name: str
) -> None:
    # GIVEN one function of one region
    plan: Plan = request.getfixturevalue(stack)

    # WHEN its environment is read
    env = environment(plan, region, name)

    # THEN it has exactly the names the catalog gives it that the stack has a value for,
    # and the multi-region ones, all read by streamer.config, never the ones Lambda sets
    wanted = catalog.FUNCTIONS[name].environment | MULTI_REGION_VARIABLES
    assert set(env) == wanted - UNCONFIGURED == ENVIRONMENT[name]
    assert set(env) <= set(config.ALL) | MULTI_REGION_VARIABLES
    assert config.REGION not in env
    assert config.MANAGEMENT_ENDPOINT not in env
    assert env[config.TRACING] == "true"
    names = plan.outputs["tableNames"]
    for variable, logical in (
        (config.CONNECTIONS_TABLE, "connections"),
        (config.REQUESTS_TABLE, "requests"),
        (config.SUBSCRIPTIONS_TABLE, "subscriptions"),
    ):
        if variable in env:
            assert env[variable] == names[logical]


def test_dev_values_come_from_its_configuration(dev: Plan) -> None:
    # GIVEN the dev stack (Pulumi.dev.yaml)  WHEN two functions' environments are read
    router = environment(dev, "us-east-1", "router")
    authorizer = environment(dev, "us-east-1", "authorizer")

    # THEN configured values are passed and the rest are the runtime's defaults
    assert router[config.LOG_LEVEL] == "DEBUG"
    assert router[config.APP_MODULE] == config.DEFAULT_APP
    assert router[config.ASYNC_THRESHOLD_MS] == str(config.Settings.async_threshold_ms)
    assert authorizer[config.JWT_ISSUER] == "https://auth.example.com/"
    assert authorizer[config.JWT_AUDIENCE] == "streamer-dev"
    assert authorizer[config.JWT_JWKS_URL].endswith("/.well-known/jwks.json")
    for name, declared in catalog.FUNCTIONS.items():
        inputs = function(dev, "us-east-1", name).inputs
        assert (inputs["memorySize"], inputs["timeout"]) == (declared.memory_mb, declared.timeout_s)
    router = function(dev, "us-east-1", "router").inputs
    assert (router["memorySize"], router["timeout"]) == (512, 29)


def test_prod_sizes_the_processor_from_its_configuration(prod: Plan) -> None:
    # GIVEN the prod stack  WHEN the processors are read
    for region in ("us-east-1", "eu-west-1"):
        processor = function(prod, region, "processor")

        # THEN they have the configured memory and the concurrency the mapping is sized for
        assert processor.inputs["memorySize"] == 2048
        env = processor.inputs["environment"]["variables"]
        assert env[config.PROCESSOR_CONCURRENCY] == "8"


def test_a_public_key_reaches_only_the_authorizer_and_stays_secret(artifacts_dir: Path) -> None:
    # GIVEN dev configured with a PEM public key (a Pulumi secret) instead of a JWKS URL
    pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQY\n-----END PUBLIC KEY-----"
    plan = run_stack(
        "dev",
        artifacts_dir,
        overrides={"jwtJwksUrl": None, "jwtPublicKey": pem, "allowedTenants": ["t1", "t2"]},
        secret_keys=("jwtPublicKey",),
    )

    # WHEN the environments are read
    envs = {name: environment(plan, "us-east-1", name) for name in catalog.FUNCTIONS}
    verifiers = {"authorizer"}

    # THEN the one function that verifies user tokens (for both APIs) gets it, as a secret
    # (which makes the whole environment secret), with the tenants; no other function gets
    # either, and the plan never shows the key
    for name in verifiers:
        assert set(envs[name]) == (ENVIRONMENT[name] - {config.JWT_JWKS_URL}) | {
            config.JWT_PUBLIC_KEY,
            config.ALLOWED_TENANTS,
        }
    assert set(envs["authorizer"].values()) == {SECRET}
    for name, env in envs.items():
        if name not in verifiers:
            assert not {config.JWT_PUBLIC_KEY, config.ALLOWED_TENANTS} & set(env)
    assert "BEGIN PUBLIC KEY" not in plan.to_json()


def test_without_tracing_there_is_no_xray(artifacts_dir: Path) -> None:
    # GIVEN prod with tracing switched off
    plan = run_stack("prod", artifacts_dir, overrides={"tracing": "false"})
    artifacts = Artifacts.load(artifacts_dir)

    # WHEN the layers are read  THEN each region makes the dependency layer only
    layers = plan.of_type("aws:lambda/layerVersion:LayerVersion")
    assert sorted(layer.name for layer in layers) == [
        f"{PROJECT}-{region}-dependencies" for region in ("eu-west-1", "us-east-1")
    ]
    assert {layer.inputs["sourceCodeHash"] for layer in layers} == {artifacts.layer.sha256}

    for region in ("us-east-1", "eu-west-1"):
        dependencies = plan.named(f"{PROJECT}-{region}-dependencies")
        in_region = functions(plan, region)
        assert set(in_region) == set(catalog.FUNCTIONS)
        for name, fn in in_region.items():
            # WHEN a function and its grants are read
            actions = {action for action, _ in grants(plan, region, name)}

            # THEN it is not traced, may not write traces, and gets the dependency layer and
            # the managed Powertools layer only
            assert fn.inputs["tracingConfig"] == {"mode": "PassThrough"}
            assert fn.inputs["environment"]["variables"][config.TRACING] == "false"
            assert not {a for a in actions if a.startswith("xray:")}
            assert fn.inputs["layers"] == [
                managed_powertools_arn(region),
                dependencies.outputs["arn"],
            ]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_with_tracing_every_function_gets_both_layers(
    request: pytest.FixtureRequest, artifacts_dir: Path, stack: str
) -> None:
    # GIVEN a stack with tracing on (every stack file turns it on)
    plan: Plan = request.getfixturevalue(stack)
    artifacts = Artifacts.load(artifacts_dir)

    # WHEN every function is read, the HTTP API's and the publish function included
    functions = plan.of_type("aws:lambda/function:Function")
    regions = {fn.region for fn in functions}
    assert len(functions) == len(regions) * len(catalog.FUNCTIONS)

    # THEN each has the region's managed Powertools layer, then its dependency layer and its
    # tracing layer, of their builds
    for fn in functions:
        dependencies = plan.named(f"{PROJECT}-{fn.region}-dependencies")
        tracing = plan.named(f"{PROJECT}-{fn.region}-tracing")
        assert fn.inputs["layers"] == [
            managed_powertools_arn(fn.region),
            dependencies.outputs["arn"],
            tracing.outputs["arn"],
        ]
        assert fn.inputs["tracingConfig"] == {"mode": "Active"}
        assert dependencies.inputs["sourceCodeHash"] == artifacts.layer.sha256
        assert tracing.inputs["sourceCodeHash"] == artifacts.tracing_layer.sha256
        assert tracing.inputs["layerName"] == f"{PROJECT}-{stack}-tracing"


@pytest.mark.parametrize(("stack", "region"), REGIONS)
@pytest.mark.parametrize("name", [f.name for f in catalog.triggered_by(Trigger.SCHEDULE)])
def test_scheduled_functions_run_every_minute(
    request: pytest.FixtureRequest, stack: str, region: str, name: str
) -> None:
    # GIVEN the region's schedule of the function
    plan: Plan = request.getfixturevalue(stack)
    rule = plan.named(f"{PROJECT}-{region}-{name}-schedule")
    target = plan.named(f"{PROJECT}-{region}-{name}-target")
    permission = plan.named(f"{PROJECT}-{region}-{name}-invoke")
    scheduled = function(plan, region, name)

    # WHEN it is read  THEN it invokes the function once a minute, and only it may; the
    # function is told that interval
    assert rule.inputs["scheduleExpression"] == "rate(1 minute)"
    assert environment(plan, region, name)[SWEEP_INTERVAL_S] == "60"
    assert target.inputs["arn"] == alias(plan, region, name).outputs["arn"]
    assert target.inputs["rule"] == rule.outputs["name"]
    assert permission.inputs["function"] == scheduled.outputs["name"]
    assert permission.inputs["qualifier"] == "live"
    assert permission.inputs["principal"] == "events.amazonaws.com"
    assert permission.inputs["sourceArn"] == rule.outputs["arn"]


def _triggers(plan: Plan, region: str) -> dict[str, set[Trigger]]:
    """What invokes each function of `region`, read from its invoke permissions and mappings."""
    by_name = {fn.outputs["name"]: name for name, fn in functions(plan, region).items()}
    by_arn = {alias(plan, region, name).outputs["arn"]: name for name in functions(plan, region)}
    schedules = {
        rule.outputs["arn"]
        for rule in plan.of_type("aws:cloudwatch/eventRule:EventRule")
        if rule.region == region and rule.inputs.get("scheduleExpression")
    }
    found: dict[str, set[Trigger]] = {name: set() for name in by_name.values()}
    for permission in plan.of_type("aws:lambda/permission:Permission"):
        if permission.region != region:
            continue
        source = permission.inputs["sourceArn"]
        if permission.inputs["principal"] == "sns.amazonaws.com":
            trigger = Trigger.NOTIFICATIONS
        elif permission.inputs["principal"] == "events.amazonaws.com":
            trigger = Trigger.SCHEDULE if source in schedules else Trigger.NOTIFICATIONS
        elif "/authorizers/" in source:
            trigger = Trigger.WEBSOCKET_AUTHORIZER
        elif source.endswith("/requests*"):
            trigger = Trigger.HTTP_API
        else:
            route = source.rsplit("/", 1)[1]
            trigger = Trigger(f"websocket:{route}")
        found[by_name[permission.inputs["function"]]].add(trigger)
    for mapping in plan.of_type("aws:lambda/eventSourceMapping:EventSourceMapping"):
        if mapping.region == region:
            found[by_arn[mapping.inputs["functionName"]]].add(Trigger.REQUESTS_STREAM)
    return found


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_pulumi_makes_the_catalogs_functions_invoked_as_it_says(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN a region of a stack under mocks
    plan: Plan = request.getfixturevalue(stack)

    # WHEN its functions and what may invoke them are read
    invoked_by = _triggers(plan, region)

    # THEN they are the catalog's functions, no more and no fewer, the ones the local stack
    # runs, each invoked by exactly the triggers the catalog declares for it
    assert set(invoked_by) == set(catalog.FUNCTIONS) == set(function_specs(MappingConfig()))
    assert invoked_by == {name: set(f.triggers) for name, f in catalog.FUNCTIONS.items()}


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_the_processor_reserves_100_and_the_others_draw_on_the_shared_pool(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the stack's functions  WHEN their reserved concurrency is read
    plan: Plan = request.getfixturevalue(stack)
    reserved = {
        name: fn.inputs["reservedConcurrentExecutions"]
        for name, fn in functions(plan, region).items()
    }

    # THEN the processor has 100 set aside (and cannot take more), the others none (-1)
    assert reserved == {name: 100 if name == "processor" else -1 for name in catalog.FUNCTIONS}


def test_reserved_concurrency_comes_from_config(artifacts_dir: Path) -> None:
    # GIVEN dev with the router reserved 50 and the processor unreserved
    given = {"router": {"reservedConcurrency": 50}, "processor": {"reservedConcurrency": -1}}
    plan = run_stack("dev", artifacts_dir, overrides={"functions": given})

    # WHEN the functions are read  THEN they have what was given, sizes unchanged
    router = function(plan, "us-east-1", "router").inputs
    processor = function(plan, "us-east-1", "processor").inputs
    assert router["reservedConcurrentExecutions"] == 50
    assert processor["reservedConcurrentExecutions"] == -1
    assert router["memorySize"] == catalog.FUNCTIONS["router"].memory_mb


def test_a_reservation_of_zero_is_refused(artifacts_dir: Path) -> None:
    # GIVEN a reservation of 0, which would stop the function from ever running
    # WHEN the program runs  THEN it stops, naming the key
    with pytest.raises(ConfigError, match=r"functions.sweeper.reservedConcurrency"):
        run_stack(
            "dev", artifacts_dir, overrides={"functions": {"sweeper": {"reservedConcurrency": 0}}}
        )


@pytest.mark.parametrize(("stack", "region"), REGIONS)
@pytest.mark.parametrize("name", sorted(catalog.FUNCTIONS))
def test_every_function_knows_the_stacks_regions_and_the_takeover_times(
    request: pytest.FixtureRequest, stack: str, region: str, name: str
) -> None:
    # GIVEN one function of one region (dev has one region, prod two)
    plan: Plan = request.getfixturevalue(stack)

    # WHEN its environment is read
    env = environment(plan, region, name)

    # THEN it names every region of the stack in stack order, its own among them, so a
    # write can go to any region's replica; the sweeper's interval as deployed; and the
    # default takeover times
    # (Pulumi.<stack>.yaml's streamer:regions)
    assert env[STACK_REGIONS] == {"dev": "us-east-1", "prod": "us-east-1,eu-west-1"}[stack]
    assert region in env[STACK_REGIONS].split(",")
    sweeper = plan.named(f"{PROJECT}-{region}-sweeper-schedule")
    assert sweeper.inputs["scheduleExpression"] == "rate(1 minute)"
    assert env[SWEEP_INTERVAL_S] == "60"
    assert (env[HEARTBEAT_STALE_S], env[TAKEOVER_GRACE_S]) == ("180", "30")


def test_the_takeover_times_come_from_config(artifacts_dir: Path) -> None:
    # GIVEN prod with a staleness of 5 minutes and no grace
    plan = run_stack("prod", artifacts_dir, overrides={"heartbeatStaleS": 300, "takeoverGraceS": 0})

    # WHEN the functions of both regions are read  THEN each has what was given
    for region in ("us-east-1", "eu-west-1"):
        for name in catalog.FUNCTIONS:
            env = environment(plan, region, name)
            assert (env[HEARTBEAT_STALE_S], env[TAKEOVER_GRACE_S]) == ("300", "0")


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ({"heartbeatStaleS": 60}, "streamer:heartbeatStaleS"),
        ({"takeoverGraceS": -1}, "streamer:takeoverGraceS"),
    ],
)
def test_takeover_times_that_cannot_work_are_refused(
    artifacts_dir: Path, given: dict, key: str
) -> None:
    # GIVEN a staleness no longer than the sweeper's interval (a running region would be
    # taken over between two heartbeats) or a negative grace
    # WHEN the program runs  THEN it stops, naming the key
    with pytest.raises(ConfigError, match=key):
        run_stack("prod", artifacts_dir, overrides=given)
