"""The event source mapping's decisions: record shape, lanes, batches, retries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from local import streams
from local.streams import BatchPolicy, Lane

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/streamer-requests/stream/2026-01-01T00:00:00"


def get_records_record(sequence: int, owner: str = "t#u", request: str = "r1") -> dict:
    """A record as boto3's GetRecords returns it (datetime, bytes)."""
    keys = {"owner": {"S": owner}, "request_id": {"S": request}}
    return {
        "eventID": f"id-{sequence}",
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2026, 1, 1, 12, 0, 0, 750000, tzinfo=UTC),
            "Keys": keys,
            "NewImage": {
                **keys,
                "status": {"S": "PENDING"},
                "blob": {"B": b"\x00\x01"},
                "nested": {"M": {"list": {"L": [{"B": b"\xff"}, {"N": "1"}]}}},
                "set": {"BS": [b"a", b"b"]},
            },
            "SequenceNumber": f"{sequence:021d}",
            "SizeBytes": 120,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def record(sequence: int, owner: str = "t#u") -> dict:
    return streams.lambda_record(get_records_record(sequence, owner), ARN)


def test_lambda_record_has_lambdas_shape() -> None:
    # WHEN a GetRecords record is converted
    converted = record(7)
    # THEN it is what Lambda delivers: epoch seconds, base64 binaries, the source ARN
    assert converted["eventVersion"] == "1.1"
    assert converted["eventSourceARN"] == ARN
    assert converted["eventSource"] == "aws:dynamodb"
    stream = converted["dynamodb"]
    assert stream["ApproximateCreationDateTime"] == 1767268800.0
    image = stream["NewImage"]
    assert image["blob"] == {"B": "AAE="}
    assert image["nested"] == {"M": {"list": {"L": [{"B": "/w=="}, {"N": "1"}]}}}
    assert image["set"] == {"BS": ["YQ==", "Yg=="]}
    assert image["status"] == {"S": "PENDING"}
    assert stream["SequenceNumber"] == "000000000000000000007"


#: The example event of "Using AWS Lambda with Amazon DynamoDB" (Lambda developer guide,
#: https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html#events-sample-dynamodb).
DOCUMENTED_EVENT = {
    "Records": [
        {
            "eventID": "1",
            "eventVersion": "1.0",
            "dynamodb": {
                "ApproximateCreationDateTime": 1693997155.0,
                "Keys": {"Id": {"N": "101"}},
                "NewImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
                "StreamViewType": "NEW_AND_OLD_IMAGES",
                "SequenceNumber": "111",
                "SizeBytes": 26,
            },
            "awsRegion": "us-west-2",
            "eventName": "INSERT",
            "eventSourceARN": "eventsourcearn",
            "eventSource": "aws:dynamodb",
        },
        {
            "eventID": "2",
            "eventVersion": "1.0",
            "dynamodb": {
                "OldImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
                "SequenceNumber": "222",
                "Keys": {"Id": {"N": "101"}},
                "SizeBytes": 59,
                "NewImage": {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}},
                "StreamViewType": "NEW_AND_OLD_IMAGES",
                "ApproximateCreationDateTime": 1693997155.0,
            },
            "awsRegion": "us-west-2",
            "eventName": "MODIFY",
            "eventSourceARN": "sourcearn",
            "eventSource": "aws:dynamodb",
        },
    ]
}


def test_stream_record_builds_the_documented_example_event() -> None:
    # GIVEN what the documented example's records say happened
    key = {"Id": {"N": "101"}}
    first = {"Message": {"S": "New item!"}, **key}
    changed = {"Message": {"S": "This item has changed"}, **key}
    common = {"created_s": 1693997155.4, "region": "us-west-2", "event_version": "1.0"}

    # WHEN the builder shapes them (sizes counted by DynamoDB's rules, not given)
    built = [
        streams.stream_record(
            "INSERT",
            key,
            new_image=first,
            sequence_number="111",
            event_source_arn="eventsourcearn",
            event_id="1",
            **common,
        ),
        streams.stream_record(
            "MODIFY",
            key,
            new_image=changed,
            old_image=first,
            sequence_number="222",
            event_source_arn="sourcearn",
            event_id="2",
            **common,
        ),
    ]

    # THEN they are the documented records, field for field, sizes included
    assert built == DOCUMENTED_EVENT["Records"]


@pytest.mark.parametrize(
    ("view_type", "images"),
    [
        ("KEYS_ONLY", set()),
        ("NEW_IMAGE", {"NewImage"}),
        ("OLD_IMAGE", {"OldImage"}),
        ("NEW_AND_OLD_IMAGES", {"NewImage", "OldImage"}),
    ],
)
def test_a_record_carries_the_images_of_its_streams_view_type(view_type, images) -> None:
    key = {"Id": {"N": "1"}}
    built = streams.stream_record(
        "MODIFY",
        key,
        new_image={**key, "v": {"S": "b"}},
        old_image={**key, "v": {"S": "a"}},
        sequence_number="1",
        created_s=0.0,
        region="us-east-1",
        event_source_arn=ARN,
        event_id="e",
        view_type=view_type,
    )
    assert {"NewImage", "OldImage"} & set(built["dynamodb"]) == images
    assert built["dynamodb"]["StreamViewType"] == view_type


def test_sizes_follow_dynamodbs_item_size_rules() -> None:
    # Names and values: strings in UTF-8, numbers 1 byte per 2 significant digits plus 1,
    # binary raw, booleans and null 1, lists and maps 3 plus 1 per element.
    assert streams.item_size({"s": {"S": "héllo"}}) == 1 + 6
    assert streams.item_size({"n": {"N": "-1200.50"}}) == 1 + 4
    assert streams.item_size({"b": {"B": "AAE="}, "t": {"BOOL": True}}) == 1 + 2 + 1 + 1
    assert streams.item_size({"l": {"L": [{"S": "ab"}, {"NULL": True}]}}) == 1 + 3 + 3 + 2
    assert streams.item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + 1 + 1 + 1


def test_lambda_record_keeps_the_streams_own_size_and_version() -> None:
    raw = get_records_record(3)
    raw["eventVersion"] = "1.0"
    converted = streams.lambda_record(raw, ARN)
    assert converted["dynamodb"]["SizeBytes"] == 120
    assert converted["eventVersion"] == "1.0"


def test_records_of_one_partition_key_share_a_lane() -> None:
    lanes = {streams.lane_for(record(n, owner="t#alice"), "owner", 10) for n in range(20)}
    assert len(lanes) == 1
    spread = {streams.lane_for(record(1, owner=f"t#user{n}"), "owner", 10) for n in range(200)}
    assert len(spread) == 10


BATCH = [record(n) for n in (1, 2, 3, 4)]


@pytest.mark.parametrize(
    ("answer", "failed", "expected"),
    [
        (None, False, None),
        ({"batchItemFailures": []}, False, None),
        ({"batchItemFailures": [{"itemIdentifier": "000000000000000000003"}]}, False, 2),
        (
            {
                "batchItemFailures": [
                    {"itemIdentifier": "000000000000000000004"},
                    {"itemIdentifier": "000000000000000000002"},
                ]
            },
            False,
            1,
        ),
        ({"batchItemFailures": [{"itemIdentifier": "999"}]}, False, 0),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, False, 0),
        ({"batchItemFailures": "all"}, False, 0),
        (None, True, 0),
    ],
    ids=["none", "empty", "one", "lowest-wins", "unknown-id", "null-id", "malformed", "error"],
)
def test_retry_starts_at_the_lowest_failed_record(answer: object, failed: bool, expected) -> None:
    assert streams.retry_from(BATCH, answer, failed) == expected


def sequences(batch: list[dict] | None) -> list[int]:
    return [int(streams.sequence_number(r)) for r in batch or []]


def test_lane_batches_by_size_and_keeps_one_batch_in_flight() -> None:
    lane = Lane(BatchPolicy(batch_size=2))
    for n in (1, 2, 3):
        lane.add(record(n), now=0)
    assert sequences(lane.take(now=0)) == [1, 2]
    assert lane.take(now=0) is None
    assert lane.settle(None, now=0) == []
    assert sequences(lane.take(now=0)) == [3]


def test_lane_waits_out_the_batching_window_unless_full() -> None:
    lane = Lane(BatchPolicy(batch_size=3, maximum_batching_window_s=1.0))
    lane.add(record(1), now=10.0)
    assert lane.take(now=10.5) is None
    assert sequences(lane.take(now=11.0)) == [1]
    lane.settle(None, now=11.0)
    for n in (2, 3, 4):
        lane.add(record(n), now=12.0)
    assert sequences(lane.take(now=12.0)) == [2, 3, 4]


def test_partial_failure_retries_from_the_failed_record_after_a_backoff() -> None:
    lane = Lane(BatchPolicy(batch_size=10, retry_backoff_s=0.5))
    for n in (1, 2, 3):
        lane.add(record(n), now=0)
    batch = lane.take(now=0)
    assert lane.settle(streams.retry_from(batch, _failing(2), False), now=0) == []
    assert lane.take(now=0.1) is None
    assert sequences(lane.take(now=0.5)) == [2, 3]


def test_a_lane_says_when_its_next_batch_is_due() -> None:
    # a batching window: due when the oldest record has waited it out, at once when full
    lane = Lane(BatchPolicy(batch_size=2, maximum_batching_window_s=1.0, retry_backoff_s=0.5))
    assert lane.next_due() is None
    lane.add(record(1), now=10.0)
    assert lane.next_due() == 11.0
    lane.add(record(2), now=10.2)
    assert lane.next_due() == 0.0
    # busy while its batch is in flight; after a failure, due when the backoff ends
    batch = lane.take(now=10.2)
    assert lane.next_due() is None
    lane.settle(streams.retry_from(batch, _failing(1), False), now=10.3)
    assert lane.next_due() == 10.8
    assert lane.take(now=10.7) is None and sequences(lane.take(now=10.8)) == [1, 2]


def _failing(sequence: int) -> dict:
    return {"batchItemFailures": [{"itemIdentifier": f"{sequence:021d}"}]}


def test_batch_is_discarded_after_the_last_retry() -> None:
    lane = Lane(BatchPolicy(batch_size=10, maximum_retry_attempts=2, retry_backoff_s=0))
    for n in (1, 2):
        lane.add(record(n), now=0)
    discarded = []
    for _ in range(3):
        batch = lane.take(now=0)
        assert sequences(batch) == [1, 2]
        discarded = lane.settle(0, now=0)
    assert sequences(discarded) == [1, 2]
    assert len(lane) == 0


def _run_until_empty(lane: Lane, poison: set[int]) -> tuple[list[int], list[int], list[int]]:
    """Invoke the lane's batches with a function that fails any batch holding a poison
    record; the sizes of the batches sent, the records done and those discarded."""
    sizes: list[int] = []
    done: list[int] = []
    discarded: list[int] = []
    now = 0.0
    while len(lane):
        batch = lane.take(now)
        if batch is None:
            now += 1.0
            continue
        sizes.append(len(batch))
        failed = bool(poison & set(sequences(batch)))
        retry_at = streams.retry_from(batch, None, failed)
        if retry_at is None:
            done += sequences(batch)
        discarded += sequences(lane.settle(retry_at, now, function_error=failed))
    return sizes, done, discarded


def test_a_function_error_splits_the_batch_in_two_and_the_split_is_not_a_retry() -> None:
    # GIVEN a mapping that allows no retry at all, bisecting on function errors
    lane = Lane(BatchPolicy(batch_size=4, maximum_retry_attempts=0, retry_backoff_s=0))
    for n in (1, 2, 3, 4):
        lane.add(record(n), now=0)
    batch = lane.take(now=0)
    # WHEN the function fails the whole batch
    discarded = lane.settle(streams.retry_from(batch, None, True), now=0, function_error=True)
    # THEN nothing is discarded: each half goes again by itself, the first first
    assert discarded == []
    assert sequences(lane.take(now=0)) == [1, 2]
    assert lane.settle(None, now=0) == []
    assert sequences(lane.take(now=0)) == [3, 4]


def test_bisecting_isolates_the_record_that_fails_and_discards_only_it() -> None:
    # GIVEN ten records, the seventh of which fails every batch it is in
    lane = Lane(BatchPolicy(batch_size=10, maximum_retry_attempts=2, retry_backoff_s=0))
    for n in range(1, 11):
        lane.add(record(n), now=0)
    # WHEN the lane runs until it is empty
    sizes, done, discarded = _run_until_empty(lane, poison={7})
    # THEN only the seventh is given up on, the others are done once each, in order
    assert discarded == [7]
    assert done == [1, 2, 3, 4, 5, 6, 8, 9, 10]
    # after halving down to it, and the three tries its retry quota allows
    assert sizes == [10, 5, 5, 2, 1, 1, 1, 1, 3]


def test_without_bisecting_the_whole_batch_is_given_up_on() -> None:
    policy = BatchPolicy(
        batch_size=10,
        maximum_retry_attempts=2,
        retry_backoff_s=0,
        bisect_batch_on_function_error=False,
    )
    lane = Lane(policy)
    for n in range(1, 11):
        lane.add(record(n), now=0)
    sizes, done, discarded = _run_until_empty(lane, poison={7})
    assert (sizes, done, discarded) == ([10, 10, 10], [], list(range(1, 11)))


@pytest.mark.parametrize("bisect, retried", [(True, [2, 3]), (False, [2, 3, 4])])
def test_a_partial_failure_bisects_at_the_failed_record(bisect: bool, retried: list[int]) -> None:
    # GIVEN a batch of three whose second record fails, and a record that arrives meanwhile
    policy = BatchPolicy(batch_size=3, retry_backoff_s=0, bisect_batch_on_function_error=bisect)
    lane = Lane(policy)
    for n in (1, 2, 3):
        lane.add(record(n), now=0)
    batch = lane.take(now=0)
    lane.add(record(4), now=0)
    lane.settle(streams.retry_from(batch, _failing(2), False), now=0)
    # THEN with bisecting on, only the batch's remaining records go again
    assert sequences(lane.take(now=0)) == retried


def test_records_past_the_maximum_record_age_are_discarded_even_while_throttled() -> None:
    # GIVEN records the function keeps being throttled for (a throttle is no retry)
    lane = Lane(BatchPolicy(batch_size=10, maximum_record_age_s=60, retry_backoff_s=1))
    lane.add(record(1), now=0)
    lane.add(record(2), now=30)
    for now in (0, 10, 20, 30, 40, 50, 60):
        assert lane.expire(now) == []
        if (batch := lane.take(now)) is not None:
            lane.throttled(now)
    assert sequences(batch) == [1, 2]
    # WHEN the first is older than the maximum age
    # THEN it is discarded, and the younger one is still sent
    assert sequences(lane.expire(now=60.5)) == [1]
    assert sequences(lane.take(now=61)) == [2]
    # and a batch in flight is never cut short
    assert lane.expire(now=1000) == []


def test_an_expired_record_leaves_the_split_it_was_in() -> None:
    lane = Lane(BatchPolicy(batch_size=4, maximum_record_age_s=5, retry_backoff_s=0))
    for n, at in ((1, 0), (2, 0), (3, 4), (4, 4)):
        lane.add(record(n), now=at)
    batch = lane.take(now=4)
    lane.settle(streams.retry_from(batch, None, True), now=4, function_error=True)
    assert sequences(lane.expire(now=6)) == [1, 2]
    # the first half is gone with them; the second half goes out as it was split
    assert sequences(lane.take(now=6)) == [3, 4]


def test_a_record_that_follows_an_expired_one_gets_its_own_retries() -> None:
    # GIVEN a failed batch of two, split; its first record failed alone twice (two retries)
    policy = BatchPolicy(
        batch_size=2, maximum_retry_attempts=2, maximum_record_age_s=10, retry_backoff_s=0
    )
    lane = Lane(policy)
    lane.add(record(1), now=0)
    lane.add(record(2), now=5)
    lane.take(now=5)
    lane.settle(0, now=5, function_error=True)
    for now in (6, 7):
        assert sequences(lane.take(now)) == [1]
        assert lane.settle(0, now, function_error=True) == []
    # WHEN it expires before its last retry, and the second fails once
    assert sequences(lane.expire(now=10.5)) == [1]
    assert sequences(lane.take(now=11)) == [2]
    # THEN the second is not given up on: the first one's retries were not its own
    assert lane.settle(0, now=11, function_error=True) == []


def test_a_partial_failure_counts_as_a_retry_of_the_records_left() -> None:
    lane = Lane(BatchPolicy(batch_size=3, maximum_retry_attempts=1, retry_backoff_s=0))
    for n in (1, 2, 3):
        lane.add(record(n), now=0)
    batch = lane.take(now=0)
    assert lane.settle(streams.retry_from(batch, _failing(2), False), now=0) == []
    batch = lane.take(now=0)
    assert sequences(batch) == [2, 3]
    # the records left failed again, past the one retry allowed: they are given up on
    assert sequences(lane.settle(streams.retry_from(batch, _failing(2), False), now=0)) == [2, 3]


def test_minus_one_means_no_limit_as_on_aws() -> None:
    # "The default value is -1, which sets the maximum age to infinite" (and the retries)
    policy = BatchPolicy(
        batch_size=1, maximum_retry_attempts=-1, maximum_record_age_s=-1, retry_backoff_s=0
    )
    lane = Lane(policy)
    lane.add(record(1), now=0)
    for now in range(50):
        assert lane.expire(now=now * 1000.0) == []
        batch = lane.take(now=now * 1000.0)
        assert sequences(batch) == [1]
        assert lane.settle(0, now=now * 1000.0, function_error=True) == []


@settings(max_examples=200, deadline=None)
@given(
    owners=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=30),
    outcomes=st.lists(
        st.one_of(st.none(), st.just("error"), st.integers(min_value=0, max_value=10)),
        max_size=200,
    ),
    batch_size=st.integers(min_value=1, max_value=5),
    bisect=st.booleans(),
)
def test_no_record_is_lost_or_reordered(
    owners: list[str], outcomes: list, batch_size: int, bisect: bool
) -> None:
    # GIVEN records of a few items spread over lanes, and any mix of answers
    policy = BatchPolicy(
        batch_size=batch_size,
        maximum_retry_attempts=3,
        retry_backoff_s=0,
        bisect_batch_on_function_error=bisect,
    )
    lanes = [Lane(policy) for _ in range(2)]
    records = [record(n, owner=owner) for n, owner in enumerate(owners, start=1)]
    for r in records:
        lanes[streams.lane_for(r, "owner", 2)].add(r, now=0)
    done: list[dict] = []
    dropped: list[dict] = []
    answers = iter(outcomes)
    # WHEN batches are invoked until the answers run out, then all succeed
    while any(len(lane) for lane in lanes):
        for lane in lanes:
            batch = lane.take(now=0)
            if batch is None:
                continue
            outcome = next(answers, None)
            if outcome == "error":
                retry_at = streams.retry_from(batch, None, failed=True)
            elif isinstance(outcome, int) and outcome < len(batch):
                failed = streams.sequence_number(batch[outcome])
                retry_at = streams.retry_from(batch, _failing(int(failed)), failed=False)
            else:
                retry_at = None
            finished = batch if retry_at is None else batch[:retry_at]
            done.extend(finished)
            dropped.extend(lane.settle(retry_at, now=0, function_error=outcome == "error"))
    # THEN every record was processed or discarded exactly once
    seen = sequences(done) + sequences(dropped)
    assert sorted(seen) == list(range(1, len(records) + 1))
    # and each item's processed records kept their stream order
    for owner in set(owners):
        mine = [s for s in sequences(done) if owners[s - 1] == owner]
        assert mine == sorted(mine)


RETRIES = 2


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    bisect=st.booleans(),
    batch_size=st.integers(min_value=1, max_value=6),
    window=st.sampled_from([0, 1, 5]),
    age=st.sampled_from([3, 10, 1000]),
)
def test_a_lane_keeps_its_promises_over_any_history(
    data: st.DataObject, bisect: bool, batch_size: int, window: int, age: int
) -> None:
    # GIVEN a lane, records arriving as time goes on, and any answers: success, a function
    # error, a partial failure anywhere, an unreadable answer, a throttle
    policy = BatchPolicy(
        batch_size=batch_size,
        maximum_batching_window_s=window,
        maximum_retry_attempts=RETRIES,
        maximum_record_age_s=age,
        retry_backoff_s=0.5,
        retry_backoff_max_s=2,
        bisect_batch_on_function_error=bisect,
    )
    lane = Lane(policy)
    now, added = 0.0, {}
    done: list[int] = []
    gone: list[int] = []
    counted: dict[int, int] = {}
    steps = data.draw(st.integers(min_value=5, max_value=60))
    for step in range(steps + 400):
        draining = step >= steps
        # THEN it is never stuck: an idle lane with records says when it goes next
        assert not len(lane) or lane.next_due() is not None
        if not draining and data.draw(st.booleans()):
            added[len(added) + 1] = now
            lane.add(record(len(added)), now)
            continue
        if draining:
            if not len(lane):
                break
            now = max(now, lane.next_due())
        else:
            now += data.draw(st.sampled_from([0, 0.25, 1, 3]))
        expired = sequences(lane.expire(now))
        # and gives up on a record for its age only once it is older than the maximum
        assert all(now - added[s] > age for s in expired)
        gone += expired
        batch = lane.take(now)
        if batch is None:
            assert not draining or not len(lane) or lane.next_due() > now
            continue
        sent = sequences(batch)
        # and never sends a record past the maximum age
        assert all(now - added[s] <= age for s in sent)
        answer = "ok" if draining else data.draw(st.sampled_from(["ok", "error", "partial", "bad"]))
        if answer == "ok" and not draining and data.draw(st.booleans()):
            lane.throttled(now)
            continue
        if answer == "ok":
            retry_at = None
        elif answer == "error":
            retry_at = streams.retry_from(batch, None, True)
        elif answer == "bad":
            retry_at = streams.retry_from(batch, {"batchItemFailures": "all"}, False)
        else:
            failed = sent[data.draw(st.integers(min_value=0, max_value=len(sent) - 1))]
            retry_at = streams.retry_from(batch, _failing(failed), False)
        done += sent if retry_at is None else sent[:retry_at]
        split = (
            bisect and answer == "error" and len(sent) - retry_at > 1
            if retry_at is not None
            else False
        )
        first = None if retry_at is None else sent[retry_at]
        if retry_at is not None and not split:
            counted[first] = counted.get(first, 0) + 1
        discarded = sequences(lane.settle(retry_at, now, function_error=answer == "error"))
        if discarded:
            # and gives up only after the retries allowed, counted on the record that failed
            # first (a split is no retry), and with bisecting on, only on that batch's rest
            assert discarded[0] == first
            assert counted[first] == RETRIES + 1
            assert not bisect or discarded == sent[retry_at:]
        gone += discarded
    # and every record was done or given up on exactly once, the done ones in order
    assert sorted(done + gone) == list(range(1, len(added) + 1))
    assert done == sorted(done)
