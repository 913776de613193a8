"""Alarms: each one a symptom a user feels, routed to the region's alarm topic.

Error rates (metric math over the function's own Errors and Invocations) replace the
blanket `Errors > 0` alarms; the authorizer, which raises to refuse a handshake, alarms on
crash lines instead; async p99, stuck requests, dead letters, iterator age and throttles
alarm on the metrics that show them; a composite alarm sums them up. Every alarm tells
its targets when it fires and when it clears.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from components.alarms import CRASH_LOG_TERMS, CRASH_NAMESPACE, crash_filter_pattern
from components.observability import base_dimensions
from components.plan import PROJECT_ROOT, Plan, PlannedResource
from components.settings import AlarmSettings, ConfigError, ProcessorSettings
from streamer import catalog
from streamer.metric_names import BASE_DIMENSIONS, METRICS, NAMESPACE

from .conftest import run_stack
from .graph import PROJECT, function, functions

pytestmark = pytest.mark.infra

REGIONS = [("dev", "us-east-1"), ("prod", "us-east-1"), ("prod", "eu-west-1")]
DEFAULTS = AlarmSettings()
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
COMPOSITE = "aws:cloudwatch/compositeAlarm:CompositeAlarm"


def service_alarms(plan: Plan, region: str) -> dict[str, PlannedResource]:
    """The region's alarms made by its ServiceAlarms component, by their name in AWS."""
    root = f"{PROJECT}-{region}-service-alarms"
    return {r.inputs["name"]: r for r in plan.descendants(root) if r.type == METRIC_ALARM}


def alarm(plan: Plan, region: str, suffix: str) -> dict:
    return service_alarms(plan, region)[f"{PROJECT}-{plan.stack}-{suffix}"].inputs


def topic_arn(plan: Plan, region: str) -> str:
    return plan.named(f"{PROJECT}-{region}-alarms").outputs["arn"]


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_every_alarm_notifies_the_region_topic_when_it_fires_and_when_it_clears(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's alarm topic and every alarm of the region
    plan: Plan = request.getfixturevalue(stack)
    topic = topic_arn(plan, region)
    alarms = [r for r in plan.of_type(METRIC_ALARM) + plan.of_type(COMPOSITE) if r.region == region]

    # WHEN their actions are read  THEN each goes to the topic, in ALARM and in OK
    assert len(alarms) > 20
    for found in alarms:
        assert found.inputs["alarmActions"] == [topic], found.name
        assert found.inputs["okActions"] == [topic], found.name


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_functions_alarm_on_their_error_rate_not_on_any_error(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's functions and alarms
    plan: Plan = request.getfixturevalue(stack)
    names = {name: fn.outputs["name"] for name, fn in functions(plan, region).items()}
    assert set(names) == set(catalog.FUNCTIONS)

    for name, function_name in names.items():
        if name == "authorizer":
            continue
        # WHEN one function's error-rate alarm is read
        rate = alarm(plan, region, f"{name}-error-rate")
        queries = {q["id"]: q for q in rate["metricQueries"]}

        # THEN it divides the function's Errors by its Invocations, per minute, and fires
        # above the default percentage in 3 of 5 minutes
        for query_id, metric_name in (("n", "Errors"), ("d", "Invocations")):
            metric = queries[query_id]["metric"]
            assert metric["namespace"] == "AWS/Lambda"
            assert metric["metricName"] == metric_name
            assert metric["dimensions"] == {"FunctionName": function_name}
            assert (metric["stat"], metric["period"]) == ("Sum", 60)
            assert queries[query_id]["returnData"] is False
        assert queries["rate"]["returnData"] is True
        assert queries["rate"]["expression"] == (
            f"IF(d >= {DEFAULTS.min_invocations}, 100 * FILL(n, 0) / d, 0)"
        )
        assert rate["threshold"] == DEFAULTS.error_rate_percent
        assert (rate["evaluationPeriods"], rate["datapointsToAlarm"]) == (5, 3)
        assert rate["comparisonOperator"] == "GreaterThanThreshold"

    # AND no alarm of the region fires on a single Lambda error any more
    for found in plan.of_type(METRIC_ALARM):
        assert found.inputs.get("metricName") != "Errors", found.name


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_every_function_alarms_on_throttles(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    for name in catalog.FUNCTIONS:
        throttles = alarm(plan, region, f"{name}-throttles")
        assert (throttles["namespace"], throttles["metricName"]) == ("AWS/Lambda", "Throttles")
        assert throttles["dimensions"] == {
            "FunctionName": function(plan, region, name).outputs["name"]
        }
        assert throttles["threshold"] == DEFAULTS.throttles


def test_the_authorizer_alarms_on_crashes_not_on_lambda_errors(dev: Plan) -> None:
    # GIVEN the dev stack's authorizer and its log group
    region = "us-east-1"
    log_group = dev.named(f"{PROJECT}-{region}-authorizer-logs").outputs["name"]
    found = service_alarms(dev, region)

    # THEN it has no error-rate alarm, but a crash alarm on the crash metric of its log
    # group, above zero in any minute
    assert f"{PROJECT}-dev-authorizer-error-rate" not in found
    crashes = alarm(dev, region, "authorizer-crashes")
    assert crashes["namespace"] == CRASH_NAMESPACE
    assert crashes["metricName"] == log_group
    assert (crashes["statistic"], crashes["threshold"]) == ("Sum", 0)


def test_the_crash_metric_is_fed_by_one_filter_per_crash_line_of_the_authorizers_logs(
    dev: Plan,
) -> None:
    log_group = dev.named(f"{PROJECT}-us-east-1-authorizer-logs").outputs["name"]
    filters = [
        r for r in dev.resources if r.type == "aws:cloudwatch/logMetricFilter:LogMetricFilter"
    ]

    # THEN every filter reads the authorizer's log group into its crash metric, one per term
    assert sorted(f.inputs["pattern"] for f in filters) == sorted(
        crash_filter_pattern(term) for term in CRASH_LOG_TERMS
    )
    for metric_filter in filters:
        assert metric_filter.inputs["logGroupName"] == log_group
        assert metric_filter.inputs["metricTransformation"] == {
            "namespace": CRASH_NAMESPACE,
            "name": log_group,
            "value": "1",
        }


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_async_slowness_and_stuck_requests_alarm_on_declared_streamer_metrics(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's alarms on Streamer's own metrics
    plan: Plan = request.getfixturevalue(stack)
    stage = plan.named(f"{PROJECT}-{region}-websocket-stage").inputs["name"]
    slow = alarm(plan, region, "async-p99")
    stuck = alarm(plan, region, "requests-stuck")

    # THEN each names a declared metric with exactly its declared dimensions, for this
    # stage and region
    for found in (slow, stuck):
        assert found["namespace"] == NAMESPACE
        declared = METRICS[found["metricName"]]
        assert set(found["dimensions"]) == set(BASE_DIMENSIONS) | set(declared.dimensions)
        assert found["dimensions"] == base_dimensions(stage, region)
    # AND async requests alarm on their p99 total time, stuck ones on re-drives in each of
    # three consecutive minutes
    assert (slow["metricName"], slow["extendedStatistic"]) == ("AsyncTotalDuration", "p99")
    assert "statistic" not in slow
    assert slow["threshold"] == DEFAULTS.total_duration_p99_ms
    assert (stuck["metricName"], stuck["statistic"], stuck["threshold"]) == (
        "SweeperRedrives",
        "Sum",
        0,
    )
    assert stuck["evaluationPeriods"] == stuck["datapointsToAlarm"] == DEFAULTS.stuck_periods


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_a_sweeper_that_keeps_failing_on_due_requests_alarms(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's alarm on the sweeper's own failures (a due request it could not
    # re-drive, a failed read of the per-user cap's queue, a failed takeover): each one
    # leaves requests waiting past their due time, and the sweeper's Lambda errors do not
    # show them, since a sweep that fails on some requests still returns
    plan: Plan = request.getfixturevalue(stack)
    stage = plan.named(f"{PROJECT}-{region}-websocket-stage").inputs["name"]
    failing = alarm(plan, region, "sweeper-failing")

    # THEN it watches the declared failure count, for this stage and region, above zero in
    # as many consecutive minutes as the stuck alarm
    assert failing["namespace"] == NAMESPACE
    assert (failing["metricName"], failing["statistic"], failing["threshold"]) == (
        "SweeperItemFailures",
        "Sum",
        0,
    )
    assert failing["dimensions"] == base_dimensions(stage, region)
    assert failing["evaluationPeriods"] == failing["datapointsToAlarm"] == DEFAULTS.stuck_periods


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_the_stream_backlog_and_dead_letters_alarm(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    age = alarm(plan, region, "iterator-age")
    depth = alarm(plan, region, "dead-letters")

    # THEN they watch the processor's lag and its dead-letter queue's depth
    assert (age["namespace"], age["metricName"], age["statistic"]) == (
        "AWS/Lambda",
        "IteratorAge",
        "Maximum",
    )
    assert age["dimensions"] == {
        "FunctionName": function(plan, region, "processor").outputs["name"]
    }
    assert age["threshold"] == ProcessorSettings().iterator_age_alarm_ms
    queue = plan.named(f"{PROJECT}-{region}-processor-dead-letters")
    assert (depth["namespace"], depth["metricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert depth["dimensions"] == {"QueueName": queue.outputs["name"]}
    assert depth["threshold"] == DEFAULTS.dead_letters


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_the_service_unhealthy_alarm_fires_when_any_region_alarm_does(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's composite alarm
    plan: Plan = request.getfixturevalue(stack)
    [composite] = [c for c in plan.of_type(COMPOSITE) if c.region == region]
    children = service_alarms(plan, region)

    # WHEN its rule is read
    rule = composite.inputs["alarmRule"]
    named = re.findall(r'ALARM\("([^"]+)"\)', rule)

    # THEN it ORs exactly the region's alarms, each of which exists before it
    assert composite.inputs["alarmName"] == f"{PROJECT}-{stack}-unhealthy"
    assert rule == " OR ".join(f'ALARM("{name}")' for name in named)
    assert sorted(named) == sorted(children)
    assert {children[name].name for name in named} <= set(composite.depends_on)
    # AND the rule is within CloudWatch's 10240 characters (API_PutCompositeAlarm)
    assert len(rule) <= 10240


def test_thresholds_and_evaluation_come_from_config(artifacts_dir: Path) -> None:
    # GIVEN dev with its own thresholds
    given = {
        "errorRatePercent": 2.5,
        "minInvocations": 0,
        "totalDurationP99Ms": 60000,
        "stuckPeriods": 5,
        "deadLetters": 3,
        "throttles": 10,
        "evaluationPeriods": 10,
        "datapointsToAlarm": 4,
    }
    plan = run_stack("dev", artifacts_dir, overrides={"alarms": given})

    # WHEN the alarms are read  THEN they use them
    region = "us-east-1"
    rate = alarm(plan, region, "router-error-rate")
    assert rate["threshold"] == 2.5
    assert (rate["evaluationPeriods"], rate["datapointsToAlarm"]) == (10, 4)
    expression = {q["id"]: q for q in rate["metricQueries"]}["rate"]["expression"]
    assert expression == "IF(d > 0, 100 * FILL(n, 0) / d, 0)"
    assert alarm(plan, region, "async-p99")["threshold"] == 60000
    stuck = alarm(plan, region, "requests-stuck")
    assert stuck["evaluationPeriods"] == stuck["datapointsToAlarm"] == 5
    assert alarm(plan, region, "dead-letters")["threshold"] == 3
    assert alarm(plan, region, "processor-throttles")["threshold"] == 10


@pytest.mark.parametrize(
    ("alarms", "message"),
    [
        ({"datapointsToAlarm": 6}, r"streamer:alarms.datapointsToAlarm: 6 is not in \[1, 5\]"),
        ({"errorRatePercent": 150}, r"streamer:alarms.errorRatePercent"),
        ({"stuckPeriods": 0}, r"streamer:alarms.stuckPeriods"),
        ({"errorRate": 5}, r"streamer:alarms: unknown keys \['errorRate'\]"),
    ],
)
def test_alarm_settings_out_of_range_are_refused(
    artifacts_dir: Path, alarms: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        run_stack("dev", artifacts_dir, overrides={"alarms": alarms})


def test_subscriptions_from_config_subscribe_every_regions_topic(artifacts_dir: Path) -> None:
    # GIVEN prod with an e-mail and an HTTPS subscriber
    subscribers = [
        {"protocol": "email", "endpoint": "oncall@example.com"},
        {"protocol": "https", "endpoint": "https://pager.example.com/hook"},
    ]
    plan = run_stack("prod", artifacts_dir, overrides={"alarmSubscriptions": subscribers})

    # WHEN each region's alarm topic's subscriptions are read
    for region in ("us-east-1", "eu-west-1"):
        topic = topic_arn(plan, region)
        found = [
            (s.inputs["protocol"], s.inputs["endpoint"])
            for s in plan.of_type("aws:sns/topicSubscription:TopicSubscription")
            if s.inputs["topic"] == topic
        ]

        # THEN both subscribe to it, in its region
        assert sorted(found) == sorted((s["protocol"], s["endpoint"]) for s in subscribers)


@pytest.mark.parametrize(
    ("subscriptions", "message"),
    [
        ([{"protocol": "pigeon", "endpoint": "x"}], r"alarmSubscriptions\[0\].protocol"),
        ([{"protocol": "email"}], r"alarmSubscriptions\[0\]: give exactly protocol and endpoint"),
        ({"protocol": "email", "endpoint": "a@b.c"}, r"alarmSubscriptions: give a list"),
    ],
)
def test_bad_subscriptions_are_refused(
    artifacts_dir: Path, subscriptions: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        run_stack("dev", artifacts_dir, overrides={"alarmSubscriptions": subscriptions})


def test_alarm_actions_notify_their_targets_besides_the_topic(artifacts_dir: Path) -> None:
    # GIVEN dev with an alarm target of its own
    target = "arn:aws:sns:us-east-1:123456789012:pager"
    plan = run_stack("dev", artifacts_dir, overrides={"alarmActions": {"us-east-1": [target]}})

    # WHEN the alarms are read  THEN they notify the topic and the target
    topic = topic_arn(plan, "us-east-1")
    for found in plan.of_type(METRIC_ALARM) + plan.of_type(COMPOSITE):
        assert found.inputs["alarmActions"] == [topic, target], found.name
    assert plan.outputs["alarmActions"] == {"us-east-1": [topic, target]}


def test_every_alarm_names_a_runbook_that_docs_operations_md_has(dev: Plan) -> None:
    # GIVEN the headings of the Alarms section of docs/operations.md
    text = (PROJECT_ROOT / "docs" / "operations.md").read_text()
    section = text[text.index("\n## Alarms\n") :]
    section = section[: section.index("\n## ", 1)]
    headings = set(re.findall(r"^### (.+)$", section, flags=re.MULTILINE))

    # WHEN each alarm's description is read  THEN it names one of them
    found = [r for r in dev.of_type(METRIC_ALARM) + dev.of_type(COMPOSITE)]
    runbooks = set()
    for each in found:
        if each.parent and each.parent.endswith("-notifications"):
            continue
        match = re.search(
            r"Runbook: docs/operations.md, Alarms, (.+)$", each.inputs["alarmDescription"]
        )
        assert match, each.name
        runbooks.add(match[1])
    assert runbooks <= headings, runbooks - headings
    # AND every runbook there is one an alarm names
    assert headings == runbooks, headings - runbooks
