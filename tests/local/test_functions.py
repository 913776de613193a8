"""Lambda functions played in-process: context, JSON boundary, errors, timeouts."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
import threading
import time

import pytest

from local.functions import (
    EncodedEvent,
    FunctionError,
    FunctionSpec,
    LambdaFunction,
    event_json,
)
from tests.e2e.wire import run

SPEC = FunctionSpec("streamer-test", "tests.local.unused.handler", timeout_s=5, memory_mb=256)


def function(handler, spec: FunctionSpec = SPEC) -> LambdaFunction:
    return LambdaFunction(spec, "eu-west-1", "111122223333", handler=handler)


def test_handler_gets_lambdas_context() -> None:
    seen = {}

    def handler(event, context):
        seen["remaining"] = context.get_remaining_time_in_millis()
        seen["context"] = context
        return {"ok": True}

    lambda_function = function(handler)
    try:
        assert lambda_function.invoke({}) == {"ok": True}
    finally:
        lambda_function.close()
    context = seen["context"]
    assert context.function_name == "streamer-test"
    assert context.invoked_function_arn == (
        "arn:aws:lambda:eu-west-1:111122223333:function:streamer-test"
    )
    assert context.memory_limit_in_mb == "256"
    assert len(context.aws_request_id) == 36
    assert 4000 < seen["remaining"] <= 5000


def test_event_and_answer_cross_as_json() -> None:
    event = {"nested": {"n": 1}}

    def handler(received, context):
        received["nested"]["n"] = 2
        return {"tuple": (1, 2)}

    lambda_function = function(handler)
    try:
        assert lambda_function.invoke(event) == {"tuple": [1, 2]}
    finally:
        lambda_function.close()
    assert event == {"nested": {"n": 1}}


def test_an_encoded_event_reaches_the_handler_decoded_once() -> None:
    # GIVEN an event already written as JSON (the gateway's message events)
    lambda_function = function(lambda event, context: {"event": event})
    try:
        # WHEN it is invoked
        answer = lambda_function.invoke(EncodedEvent('{"body": "{\\"a\\": 1}"}'))
    finally:
        lambda_function.close()
    # THEN the handler gets its object, not its text encoded once more
    assert answer == {"event": {"body": '{"a": 1}'}}


def refuse(event, context):
    raise Exception("Unauthorized")


@pytest.mark.parametrize(
    ("handler", "error_type", "message"),
    [
        (
            refuse,
            "Exception",
            "Unauthorized",
        ),
        (lambda e, c: {"bad": object()}, "TypeError", "not JSON serializable"),
    ],
    ids=["raises", "unserialisable"],
)
def test_failures_are_function_errors(handler, error_type: str, message: str) -> None:
    lambda_function = function(handler)
    try:
        with pytest.raises(FunctionError) as raised:
            lambda_function.invoke({})
    finally:
        lambda_function.close()
    assert raised.value.error_type == error_type
    assert message in raised.value.error_message


def test_late_answer_is_a_timeout() -> None:
    spec = FunctionSpec("slow", "x.handler", timeout_s=0.05)
    lambda_function = function(lambda e, c: time.sleep(0.1), spec)
    try:
        with pytest.raises(FunctionError) as raised:
            lambda_function.invoke({})
    finally:
        lambda_function.close()
    assert raised.value.error_type == "TimeoutError"


def test_invocations_run_concurrently_off_the_event_loop() -> None:
    lambda_function = function(lambda e, c: time.sleep(0.2) or e["n"])

    async def scenario() -> list:
        return await asyncio.gather(*(lambda_function.invoke_async({"n": n}) for n in range(8)))

    started = time.monotonic()
    try:
        assert run(scenario()) == list(range(8))
    finally:
        lambda_function.close()
    assert time.monotonic() - started < 1.0


def test_an_invocation_past_the_reserved_concurrency_is_throttled_not_queued() -> None:
    release = threading.Event()

    def handler(event, context):
        release.wait(5)
        return {"n": event["n"]}

    spec = FunctionSpec("streamer-limited", "x.handler", timeout_s=10, reserved_concurrency=1)
    lambda_function = function(handler, spec)
    try:
        # GIVEN one invocation running, at a limit of one
        first = lambda_function.submit({"n": 1})
        # WHEN another comes
        second = lambda_function.submit({"n": 2})
        # THEN it fails at once as Lambda throttles, while the first runs on
        with pytest.raises(FunctionError) as caught:
            second.result(timeout=1)
        assert (caught.value.error_type, caught.value.error_message) == (
            "TooManyRequestsException",
            "Rate Exceeded.",
        )
        release.set()
        assert first.result(timeout=5) == {"n": 1}
        # AND once it ended, the next one runs
        assert lambda_function.invoke({"n": 3}) == {"n": 3}
    finally:
        release.set()
        lambda_function.close()
    assert lambda_function.throttles == 1 and lambda_function.peak_concurrency == 1


def test_a_queued_invocation_its_caller_gave_up_on_no_longer_counts_as_running() -> None:
    # GIVEN a function with one thread and a reserved concurrency of 2, one invocation
    # running and a second queued behind it
    release = threading.Event()

    def handler(event, context):
        release.wait(5)
        return {"n": event["n"]}

    spec = FunctionSpec("streamer-queued", "x.handler", timeout_s=10, concurrency=1)
    lambda_function = function(handler, dataclasses.replace(spec, reserved_concurrency=2))

    async def give_up_on_the_queued_one() -> list:
        running = asyncio.ensure_future(lambda_function.invoke_async({"n": 1}))
        # WHEN the caller of the queued one stops waiting before it ever ran
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(lambda_function.invoke_async({"n": 2}), 0.1)
        release.set()
        first = await running
        # THEN it counts as running no more: two more at once are both let through
        again = (lambda_function.invoke_async({"n": n}) for n in (3, 4))
        return [first, *await asyncio.gather(*again)]

    try:
        answers = run(give_up_on_the_queued_one())
    finally:
        lambda_function.close()
    assert answers == [{"n": 1}, {"n": 3}, {"n": 4}]
    assert lambda_function.throttles == 0


def test_an_encoded_event_crosses_to_a_worker_as_plain_text() -> None:
    # An `EncodedEvent` pickled would name its class, which the worker must look up and
    # call to unpickle; its text is what the function needs.
    text = event_json(EncodedEvent('{"a": 1}'))

    assert type(text) is str
    assert text == '{"a": 1}'
    assert b"EncodedEvent" not in pickle.dumps(text, pickle.HIGHEST_PROTOCOL)
