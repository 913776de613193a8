"""Topics, external publishers and lifecycle events on the local stack.

The image-pipeline flow (`../shared/seeds/001`): the client makes the job id,
two tabs subscribe, the pipeline publishes the result through SNS; the
event-bus flow (`003`): a `Real-time Notification` for one user through
EventBridge; and the lifecycle events the processor puts on the bus.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.e2e.conftest import ROOT, LocalStack, start_stack
from tests.e2e.wire import ask, open_socket, receive, run, run_async_request, unique

pytestmark = pytest.mark.e2e

BUS = "streamer-lifecycle"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack that publishes lifecycle events to a bus on its moto server."""
    with start_stack(tmp_path_factory.mktemp("topics-stack"), "--event-bus", BUS) as local:
        yield local


def publish_with_cli(stack: LocalStack, *args: str) -> dict:
    """`python -m local publish ...` against this stack, as a pipeline's script would."""
    done = subprocess.run(
        [sys.executable, "-m", "local", "publish", "--url", stack.http_url, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def put_event(stack: LocalStack, detail: dict) -> dict:
    """One PutEvents entry posted to the stack's EventBridge ingress."""
    entry = {
        "Source": "bayon.coagent.studio",
        "DetailType": "Real-time Notification",
        "Detail": json.dumps(detail),
    }
    request = urllib.request.Request(
        stack.ready["eventbridge_ingress_url"], data=json.dumps(entry).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


async def no_message(socket, seconds: float = 1.0) -> bool:
    try:
        await receive(socket, timeout=seconds)
    except TimeoutError:
        return True
    return False


def test_image_pipeline_result_reaches_both_tabs_and_a_late_subscriber(stack: LocalStack) -> None:
    tenant, user = unique("bookimg"), unique("reader")
    token = stack.token(user, tenant)
    # GIVEN the frontend made the job id before uploading (`job-${timestamp}-${random}`)
    job_id = f"job-{int(time.time() * 1000)}-{unique('x')[-9:]}"
    result = {"validatedBooks": 2, "resultsLocation": f"s3://bookimg-results/{job_id}/final.json"}

    async def scenario() -> None:
        async with open_socket(stack.url(token)) as tab1, open_socket(stack.url(token)) as tab2:
            # AND two tabs subscribed to it
            for tab in (tab1, tab2):
                answer = await ask(tab, {"action": "subscribe", "topic": job_id})
                assert answer == {"type": "subscribed", "topic": job_id}

            # WHEN the validator publishes the result through SNS
            published = await asyncio.to_thread(
                publish_with_cli,
                stack,
                *("--via", "sns", "--tenant", tenant, "--topic", job_id),
                *("--event", "processing.complete", "--data", json.dumps(result)),
            )
            assert published["result"]["delivered"] == 2

            # THEN both tabs get the notification
            for tab in (tab1, tab2):
                message = await receive(tab)
                assert message["type"] == "notification" and message["topic"] == job_id
                assert message["event"] == "processing.complete" and message["data"] == result
                assert isinstance(message["timestamp"], int)

        # AND a tab opened after the publish gets it as the answer to its subscribe
        async with open_socket(stack.url(token)) as late:
            answer = await ask(late, {"action": "subscribe", "topic": job_id})
            assert answer["type"] == "notification" and answer["data"] == result

    run(scenario())


def test_another_tenants_subscriber_to_the_same_topic_gets_nothing(stack: LocalStack) -> None:
    topic = unique("job")
    ours, theirs = unique("tenant"), unique("tenant")

    async def scenario() -> None:
        async with open_socket(stack.url(stack.token("u1", theirs))) as other:
            assert (await ask(other, {"action": "subscribe", "topic": topic}))["type"] == (
                "subscribed"
            )
            published = await asyncio.to_thread(
                publish_with_cli, stack, "--tenant", ours, "--topic", topic, "--event", "done"
            )
            assert published["result"]["delivered"] == 0
            assert await no_message(other)
            # Not even as a retained message.
            again = await ask(other, {"action": "subscribe", "topic": topic})
            assert again["type"] == "subscribed"

    run(scenario())


def test_a_user_notification_through_eventbridge_reaches_only_that_users_connections(
    stack: LocalStack,
) -> None:
    tenant = unique("agency")
    alice, bob = unique("alice"), unique("bob")

    async def scenario() -> None:
        async with (
            open_socket(stack.url(stack.token(alice, tenant))) as alice_phone,
            open_socket(stack.url(stack.token(alice, tenant))) as alice_laptop,
            open_socket(stack.url(stack.token(bob, tenant))) as bob_laptop,
        ):
            for socket in (alice_phone, alice_laptop, bob_laptop):
                assert (await ask(socket, {"action": "ping"}))["type"] == "pong"
            detail = {
                "tenant_id": tenant,
                "user_id": alice,
                "event": "content_generated",
                "data": {"contentId": "c-1", "title": "Spring market update"},
            }
            answer = await asyncio.to_thread(put_event, stack, detail)
            assert answer["result"]["delivered"] == 2
            for socket in (alice_phone, alice_laptop):
                message = await receive(socket)
                assert message["type"] == "notification" and "topic" not in message
                assert message["event"] == "content_generated"
                assert message["data"] == detail["data"]
            assert await no_message(bob_laptop)

    run(scenario())


def test_a_malformed_publish_is_refused_with_its_reason(stack: LocalStack) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "local", "publish", "--url", stack.http_url),
            *("--tenant", "not a tenant", "--topic", "job-1", "--event", "done"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    error = json.loads(done.stderr)
    assert error["errorType"] == "PublishFailed" and "tenant_id" in error["errorMessage"]


def bus_queue(stack: LocalStack, name: str) -> tuple[object, str]:
    """An SQS queue that a rule on the stack's bus feeds with every `streamer` event."""
    clients = {
        service: boto3.client(
            service,
            endpoint_url=stack.ready["events_endpoint"],
            region_name=stack.ready["region"],
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        for service in ("events", "sqs")
    }
    sqs, events = clients["sqs"], clients["events"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name=name, EventBusName=BUS, EventPattern=json.dumps({"source": ["streamer"]}))
    events.put_targets(Rule=name, EventBusName=BUS, Targets=[{"Id": "queue", "Arn": arn}])
    return sqs, queue_url


def test_lifecycle_events_arrive_on_the_bus_with_the_documented_shape(stack: LocalStack) -> None:
    tenant, user = unique("tenant"), unique("user")
    sqs, queue_url = bus_queue(stack, unique("lifecycle"))

    async def scenario() -> tuple[str, str]:
        async with open_socket(stack.url(stack.token(user, tenant))) as socket:
            ok, _ = await run_async_request(socket, "generate_report", {"pages": 2, "page_ms": 10})
            bad, _ = await run_async_request(
                socket, "generate_report", {"pages": 2, "page_ms": 10, "fail_at_page": 1}
            )
            return ok["request_id"], bad["request_id"]

    ok_id, bad_id = run(scenario())
    events: dict[str, dict] = {}
    deadline = time.monotonic() + 30
    while len(events) < 2 and time.monotonic() < deadline:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in answer.get("Messages", []):
            event = json.loads(message["Body"])
            events[event["detail"]["request_id"]] = event
    assert set(events) == {ok_id, bad_id}
    documented = json.loads(
        (Path(ROOT) / "tests/unit/events/eventbridge_lifecycle.json").read_text()
    )
    for request_id, detail_type, status in (
        (ok_id, "Request Completed", "COMPLETED"),
        (bad_id, "Request Failed", "FAILED"),
    ):
        event = events[request_id]
        assert event["source"] == "streamer" and event["detail-type"] == detail_type
        assert set(documented["detail"]) <= set(event["detail"])
        detail = event["detail"]
        assert (detail["tenant_id"], detail["user_id"], detail["status"]) == (tenant, user, status)
        assert detail["action"] == "generate_report" and detail["duration_ms"] > 0
