"""Notifications: the SNS topic, the bus with its archive and rule, the publish function's DLQ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.plan import Plan
from streamer import config

from .conftest import run_stack
from .graph import PROJECT, alias, environment, function, functions, grants

pytestmark = pytest.mark.infra

#: Written out here, not taken from the components.
LIFECYCLE_PUBLISHERS = {"router", "processor", "sweeper", "poller"}
PUT_EVENTS = "events:PutEvents"
REGIONS = [("dev", "us-east-1"), ("prod", "us-east-1"), ("prod", "eu-west-1")]


def named(plan: Plan, region: str, suffix: str):
    return plan.named(f"{PROJECT}-{region}-notifications-{suffix}")


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_the_bus_rule_sends_real_time_notifications_to_the_publish_function(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's bus, rule, target and dead-letter queue
    plan: Plan = request.getfixturevalue(stack)
    bus, rule, target = (named(plan, region, s) for s in ("bus", "rule", "target"))
    dlq = named(plan, region, "dead-letters")

    # WHEN they are read  THEN only `Real-time Notification` events of the bus reach the
    # function, retried for an hour, then parked in the queue
    assert rule.inputs["eventBusName"] == bus.outputs["name"]
    assert json.loads(rule.inputs["eventPattern"]) == {"detail-type": ["Real-time Notification"]}
    assert target.inputs["arn"] == alias(plan, region, "publish").outputs["arn"]
    assert target.inputs["eventBusName"] == bus.outputs["name"]
    assert target.inputs["retryPolicy"] == {
        "maximumEventAgeInSeconds": 3600,
        "maximumRetryAttempts": 8,
    }
    assert target.inputs["deadLetterConfig"] == {"arn": dlq.outputs["arn"]}
    # AND every event of the bus is archived for replay
    archive = named(plan, region, "archive")
    assert archive.inputs["eventSourceArn"] == bus.outputs["arn"]
    assert archive.inputs["retentionDays"] == 7


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_the_sns_topic_invokes_the_publish_function_and_failures_reach_the_dlq(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    topic, subscription = named(plan, region, "topic"), named(plan, region, "subscription")
    dlq, invoke = named(plan, region, "dead-letters"), named(plan, region, "invoke-config")
    publish = function(plan, region, "publish")

    assert subscription.inputs["topic"] == topic.outputs["arn"]
    assert subscription.inputs["protocol"] == "lambda"
    assert subscription.inputs["endpoint"] == alias(plan, region, "publish").outputs["arn"]
    assert json.loads(subscription.inputs["redrivePolicy"]) == {
        "deadLetterTargetArn": dlq.outputs["arn"]
    }
    # A failed invocation (malformed message, store down) is retried twice, then parked.
    assert invoke.inputs["functionName"] == publish.outputs["name"]
    assert invoke.inputs["qualifier"] == "live"
    assert invoke.inputs["maximumRetryAttempts"] == 2
    assert invoke.inputs["destinationConfig"] == {"onFailure": {"destination": dlq.outputs["arn"]}}


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_only_the_topic_and_the_rule_may_invoke_it_or_fill_its_queue(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    topic, rule = named(plan, region, "topic"), named(plan, region, "rule")
    dlq, publish = named(plan, region, "dead-letters"), function(plan, region, "publish")
    sources = {
        "sns.amazonaws.com": topic.outputs["arn"],
        "events.amazonaws.com": rule.outputs["arn"],
    }

    for source, suffix in (
        ("sns.amazonaws.com", "sns-invoke"),
        ("events.amazonaws.com", "events-invoke"),
    ):
        permission = named(plan, region, suffix)
        assert permission.inputs["function"] == publish.outputs["name"]
        assert permission.inputs["principal"] == source
        assert permission.inputs["sourceArn"] == sources[source]

    policy = json.loads(named(plan, region, "dead-letters-policy").inputs["policy"])
    allowed = {
        (s["Principal"]["Service"], s["Condition"]["ArnEquals"]["aws:SourceArn"])
        for s in policy["Statement"]
    }
    assert allowed == set(sources.items())
    assert {r for s in policy["Statement"] for r in s["Resource"]} == {dlq.outputs["arn"]}


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_requests_end_with_lifecycle_events_on_the_regions_bus(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    plan: Plan = request.getfixturevalue(stack)
    bus = named(plan, region, "bus")
    for name in ("router", "processor", "sweeper", "poller"):
        assert environment(plan, region, name)[config.EVENT_BUS] == bus.outputs["name"]
    for name in ("authorizer", "connect", "disconnect", "publish"):
        assert config.EVENT_BUS not in environment(plan, region, name)
    assert environment(plan, region, "publish")[config.TOPIC_RETENTION_S] == str(24 * 3600)


@pytest.mark.parametrize("setting", [None, True, False])
def test_lifecycle_events_follow_the_stack_setting(
    artifacts_dir: Path, setting: bool | None
) -> None:
    # GIVEN prod with `lifecycleEvents` unset (on by default), on, or off
    overrides = {} if setting is None else {"lifecycleEvents": setting}
    plan = run_stack("prod", artifacts_dir, overrides=overrides)
    on = setting is not False

    for region in ("us-east-1", "eu-west-1"):
        bus = named(plan, region, "bus")
        for name in functions(plan, region):
            # WHEN a function's environment and grants are read
            env = environment(plan, region, name)
            events = {(a, r) for a, r in grants(plan, region, name) if a.startswith("events:")}

            # THEN only when on do the router, processor, sweeper and poller get the bus's
            # name and may put events on it, on it only; no other function ever does
            if on and name in LIFECYCLE_PUBLISHERS:
                assert env[config.EVENT_BUS] == bus.outputs["name"]
                assert events == {(PUT_EVENTS, bus.outputs["arn"])}
            else:
                assert config.EVENT_BUS not in env
                assert events == set()
        # AND the bus still brings other systems' notifications to the publish function
        target = named(plan, region, "target")
        assert target.inputs["eventBusName"] == bus.outputs["name"]
        assert target.inputs["arn"] == alias(plan, region, "publish").outputs["arn"]
        assert plan.outputs["eventBuses"][region] == bus.outputs["name"]


def test_publishers_find_each_regions_topic_and_bus_in_the_stack_outputs(prod: Plan) -> None:
    for region in ("us-east-1", "eu-west-1"):
        topic, bus = named(prod, region, "topic"), named(prod, region, "bus")
        assert prod.outputs["notificationTopics"][region] == topic.outputs["arn"]
        assert prod.outputs["eventBuses"][region] == bus.outputs["name"]
