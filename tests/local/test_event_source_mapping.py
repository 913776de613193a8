"""The stream poller on moto's streams: every record, in item order, retried as Lambda does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from local import dynamodb
from local.__main__ import _stack_parser
from local.event_source_mapping import EventSourceMapping, MappingConfig
from local.functions import FunctionSpec, LambdaFunction
from local.streams import BatchPolicy

REGION = "us-east-1"
TABLES = {"connections": "t-connections", "requests": "t-requests", "subscriptions": "t-subs"}


@pytest.fixture(scope="module")
def moto() -> Iterator[tuple[str, str]]:
    server = dynamodb.MotoServer("127.0.0.1")
    try:
        arns = dynamodb.create_tables(server.endpoint_url, REGION, TABLES)
        yield server.endpoint_url, arns[TABLES["requests"]]
    finally:
        server.stop()


class Processor:
    """A stand-in processor: keeps every batch, fails chosen records once each."""

    def __init__(self, expected: int, fail_once: set[str]) -> None:
        self.batches: list[list[dict]] = []
        self.delivered: list[tuple[str, str, str]] = []
        self._expected = expected
        self._fail_once = set(fail_once)
        self._lock = threading.Lock()
        self.all_done = threading.Event()

    def handler(self, event: dict, context) -> dict:
        records = event["Records"]
        with self._lock:
            self.batches.append(records)
            failures = []
            for record in records:
                request = record["dynamodb"]["NewImage"]["request_id"]["S"]
                step = record["dynamodb"]["NewImage"]["step"]["N"]
                if f"{request}/{step}" in self._fail_once:
                    self._fail_once.discard(f"{request}/{step}")
                    failures.append({"itemIdentifier": record["dynamodb"]["SequenceNumber"]})
                    break
                self.delivered.append((request, step, record["eventName"]))
            if len(self.delivered) >= self._expected:
                self.all_done.set()
        return {"batchItemFailures": failures}


def test_every_record_arrives_once_in_item_order_despite_failures(moto) -> None:
    endpoint, stream_arn = moto
    items = [f"req-{n}" for n in range(6)]
    steps = 4
    # GIVEN a processor that fails the third write of two items once
    processor = Processor(expected=len(items) * steps, fail_once={"req-1/2", "req-4/2"})
    function = LambdaFunction(
        FunctionSpec("processor", "x.handler", timeout_s=30, concurrency=3),
        REGION,
        "123456789012",
        handler=processor.handler,
    )
    mapping = EventSourceMapping(
        dynamodb.client("dynamodbstreams", endpoint, REGION),
        stream_arn,
        function,
        MappingConfig(
            policy=BatchPolicy(batch_size=3, retry_backoff_s=0.01),
            parallelization_factor=3,
            poll_interval_s=0.02,
        ),
    )
    mapping.start()
    try:
        # WHEN each item is written `steps` times, items interleaved
        table = dynamodb.client("dynamodb", endpoint, REGION)
        for step in range(steps):
            for request in items:
                table.put_item(
                    TableName=TABLES["requests"],
                    Item={
                        "request_key": {"S": f"tenant#user#{request}"},
                        "request_id": {"S": request},
                        "step": {"N": str(step)},
                    },
                )
        assert processor.all_done.wait(20), processor.delivered
    finally:
        mapping.stop()
        function.close()

    # THEN every write reached the processor once, in its item's order
    for request in items:
        mine = [(step, name) for r, step, name in processor.delivered if r == request]
        assert [step for step, _ in mine] == [str(s) for s in range(steps)], (request, mine)
        assert [name for _, name in mine] == ["INSERT"] + ["MODIFY"] * (steps - 1)
    # and the failed records came again, at the head of a later batch
    heads = [
        (b[0]["dynamodb"]["NewImage"]["request_id"]["S"], b[0]["dynamodb"]["NewImage"]["step"]["N"])
        for b in processor.batches
    ]
    assert ("req-1", "2") in heads and ("req-4", "2") in heads
    # in Lambda's shape
    record = processor.batches[0][0]
    assert record["eventSourceARN"] == stream_arn
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], float)
    assert all(len(batch) <= 3 for batch in processor.batches)


@contextmanager
def polling(
    endpoint: str, stream_arn: str, handler, config: MappingConfig
) -> Iterator[EventSourceMapping]:
    """A mapping from `stream_arn` to a processor running `handler`, for the `with` block."""
    function = LambdaFunction(
        FunctionSpec(
            "processor", "x.handler", timeout_s=30, concurrency=config.parallelization_factor
        ),
        REGION,
        "123456789012",
        handler=handler,
    )
    mapping = EventSourceMapping(
        dynamodb.client("dynamodbstreams", endpoint, REGION), stream_arn, function, config
    )
    mapping.start()
    try:
        yield mapping
    finally:
        mapping.stop()
        function.close()


def put_request(endpoint: str, table: str, request: str) -> None:
    dynamodb.client("dynamodb", endpoint, REGION).put_item(
        TableName=table,
        Item={
            "request_key": {"S": f"tenant#user#{request}"},
            "request_id": {"S": request},
            "step": {"N": "0"},
        },
    )


def wait_until(done, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_an_invocation_ending_between_reads_does_not_put_the_next_read_off(moto) -> None:
    endpoint, stream_arn = moto
    interval = 2.0
    seen: dict[str, float] = {}
    ended: dict[str, float] = {}

    def handler(event: dict, context) -> dict:
        for record in event["Records"]:
            request = record["dynamodb"]["NewImage"]["request_id"]["S"]
            seen.setdefault(request, time.monotonic())
            # GIVEN two invocations: a short one, after whose end the shard is read and
            # found empty, and a long one that ends between that read and the next
            # (its client then sends another request)
            if request in {"short", "second"}:
                time.sleep(0.2 if request == "short" else interval / 2)
                if request == "second":
                    put_request(endpoint, TABLES["requests"], "next")
                ended[request] = time.monotonic()
        return {"batchItemFailures": []}

    put_request(endpoint, TABLES["requests"], "short")
    put_request(endpoint, TABLES["requests"], "second")
    # One record a batch: the two run side by side (their keys hash to different lanes).
    config = MappingConfig(
        policy=BatchPolicy(batch_size=1), poll_interval_s=interval, parallelization_factor=2
    )
    with polling(endpoint, stream_arn, handler, config):
        wait_until(lambda: "next" in seen)

    # THEN the next record is read when the read after the short one's end is due
    # (an interval after it), not a whole interval after the second one's end
    assert ended["second"] < ended["short"] + interval, (seen, ended)
    assert seen["next"] < ended["short"] + interval + interval / 4, (seen, ended)


def test_a_failed_batch_is_retried_after_its_backoff_not_the_next_poll(moto) -> None:
    endpoint, _ = moto
    # Tables of its own: the only record in the stream is this test's.
    names = {"connections": "r-c", "requests": "r-requests", "subscriptions": "r-s"}
    stream_arn = dynamodb.create_tables(endpoint, REGION, names)["r-requests"]
    interval = 3.0
    deliveries: list[float] = []

    def handler(event: dict, context) -> dict:
        deliveries.append(time.monotonic())
        # GIVEN a processor that fails the record the first time
        failed = [{"itemIdentifier": event["Records"][0]["dynamodb"]["SequenceNumber"]}]
        return {"batchItemFailures": failed if len(deliveries) == 1 else []}

    put_request(endpoint, "r-requests", "retried")
    config = MappingConfig(
        policy=BatchPolicy(batch_size=1, retry_backoff_s=0.1),
        poll_interval_s=interval,
        shard_discovery_s=60,
        parallelization_factor=1,
    )
    with polling(endpoint, stream_arn, handler, config):
        wait_until(lambda: len(deliveries) >= 2)

    # THEN it came again after its 0.1 s backoff, long before the next poll was due
    assert len(deliveries) == 2
    assert deliveries[1] - deliveries[0] < interval / 2, deliveries


def test_the_processors_concurrency_limit_holds_and_throttled_batches_wait(moto) -> None:
    endpoint, _ = moto
    # Tables of its own: the only records in the stream are this test's.
    names = {"connections": "l-c", "requests": "l-requests", "subscriptions": "l-s"}
    stream_arn = dynamodb.create_tables(endpoint, REGION, names)["l-requests"]
    requests = [f"limited-{n}" for n in range(8)]
    lock = threading.Lock()
    running, peak, delivered = [0], [0], []

    def handler(event: dict, context) -> dict:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1
            delivered.extend(r["dynamodb"]["NewImage"]["request_id"]["S"] for r in event["Records"])
        return {"batchItemFailures": []}

    # GIVEN four lanes, one record a batch, and a processor limited to one invocation at once;
    # a batch may not be retried after a function error (throttles are not function errors)
    config = MappingConfig(
        policy=BatchPolicy(batch_size=1, maximum_retry_attempts=0, retry_backoff_s=0.02),
        parallelization_factor=4,
        poll_interval_s=0.02,
    )
    function = LambdaFunction(
        FunctionSpec("processor", "x.handler", timeout_s=30, concurrency=4, reserved_concurrency=1),
        REGION,
        "123456789012",
        handler=handler,
    )
    mapping = EventSourceMapping(
        dynamodb.client("dynamodbstreams", endpoint, REGION), stream_arn, function, config
    )
    mapping.start()
    try:
        # WHEN more requests arrive at once than the limit runs
        for request in requests:
            put_request(endpoint, "l-requests", request)
        wait_until(lambda: len(delivered) >= len(requests))
        stats = mapping.stats()
    finally:
        mapping.stop()
        function.close()

    # THEN never more than one invocation ran at a time; the others were throttled and
    # waited, and every record was delivered once, none given up on
    assert peak[0] == 1 and function.peak_concurrency == 1
    assert stats["throttles"] > 0 and function.throttles == stats["throttles"]
    assert sorted(delivered) == sorted(requests)
    assert stats["records_discarded"] == 0 and stats["function_errors"] == 0


def test_a_record_that_fails_every_invocation_is_isolated_and_only_it_discarded(moto) -> None:
    endpoint, _ = moto
    names = {"connections": "b-c", "requests": "b-requests", "subscriptions": "b-s"}
    stream_arn = dynamodb.create_tables(endpoint, REGION, names)["b-requests"]
    batches: list[list[str]] = []
    done: list[str] = []

    def handler(event: dict, context) -> dict:
        ids = [r["dynamodb"]["NewImage"]["request_id"]["S"] for r in event["Records"]]
        batches.append(ids)
        # GIVEN a processor whose every invocation with one poison record fails
        if "poison" in ids:
            raise RuntimeError("the worker crashed")
        done.extend(ids)
        return {"batchItemFailures": []}

    requests = ["r0", "r1", "poison", "r3"]
    for request in requests:
        put_request(endpoint, "b-requests", request)
    # WHEN the deployed mapping's error handling runs them, one lane, one batch of all
    config = MappingConfig(
        policy=BatchPolicy(batch_size=4, maximum_batching_window_s=1, retry_backoff_s=0.01),
        poll_interval_s=0.02,
        parallelization_factor=1,
    )
    with polling(endpoint, stream_arn, handler, config) as mapping:
        wait_until(lambda: mapping.stats()["records_discarded"] >= 1 and len(done) >= 3)
        stats = mapping.stats()

    # THEN the others ran once each, in order, and only the poison record was given up on,
    # after halving the batch and the retries the deployed mapping allows that one record
    assert done == ["r0", "r1", "r3"]
    assert batches[:3] == [requests, ["r0", "r1"], ["poison", "r3"]]
    retries = config.policy.maximum_retry_attempts
    assert batches[3:] == [["poison"]] * (1 + retries) + [["r3"]]
    assert stats["records_discarded"] == 1


def test_records_that_waited_past_the_maximum_age_are_discarded_not_sent(moto) -> None:
    endpoint, _ = moto
    names = {"connections": "a-c", "requests": "a-requests", "subscriptions": "a-s"}
    stream_arn = dynamodb.create_tables(endpoint, REGION, names)["a-requests"]
    delivered: list[dict] = []

    def handler(event: dict, context) -> dict:
        delivered.extend(event["Records"])
        return {"batchItemFailures": []}

    config = MappingConfig(
        policy=BatchPolicy(maximum_record_age_s=0.5, retry_backoff_s=0.01),
        poll_interval_s=0.02,
        parallelization_factor=1,
    )
    with polling(endpoint, stream_arn, handler, config) as mapping:
        # GIVEN records that wait in the mapping (disabled, as a throttled function's would)
        mapping.set_enabled(False)
        for request in ("old-1", "old-2"):
            put_request(endpoint, "a-requests", request)
        wait_until(lambda: mapping.stats()["records_waiting"] == 2)
        # WHEN they are older than the maximum record age by the time they could go
        time.sleep(0.6)
        mapping.set_enabled(True)
        wait_until(lambda: mapping.stats()["records_expired"] == 2)
        put_request(endpoint, "a-requests", "young")
        wait_until(lambda: len(delivered) == 1)
        stats = mapping.stats()

    # THEN they were discarded, never sent, and a younger record still goes out
    assert stats["records_expired"] == 2 and stats["records_discarded"] == 2
    assert [r["dynamodb"]["NewImage"]["request_id"]["S"] for r in delivered] == ["young"]


def test_an_idle_shard_is_read_no_more_often_than_lambda_reads_one() -> None:
    # GIVEN Lambda's documented rate: it "polls shards in your DynamoDB stream for records
    # at a base rate of 4 times per second" ("Using AWS Lambda with Amazon DynamoDB")
    lambdas_interval_s = 1 / 4
    # WHEN the local mapping is made with its defaults, in code and by `python -m local`
    flag_default = _stack_parser().parse_args([]).poll_interval
    # THEN it reads an idle shard no sooner: local pickup is not faster than AWS's
    assert MappingConfig().poll_interval_s == lambdas_interval_s
    assert flag_default == lambdas_interval_s
