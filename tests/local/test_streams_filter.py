"""The local mapping filters records as Lambda does with the deployed pattern."""

from __future__ import annotations

import pytest

from local.streams import matches_filter
from streamer.schema import stream_filter_pattern


def record(event_name: str, status: str, region: str) -> dict:
    return {
        "eventName": event_name,
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "NewImage": {"status": {"S": status}, "origin_region": {"S": region}},
            "SequenceNumber": "1",
        },
    }


@pytest.mark.parametrize(
    "event_name, status, region, passes",
    [
        ("INSERT", "PENDING", "us-east-1", True),
        ("MODIFY", "PENDING", "us-east-1", True),
        ("REMOVE", "PENDING", "us-east-1", False),
        ("MODIFY", "PROCESSING", "us-east-1", False),
        ("INSERT", "PENDING", "eu-west-1", False),
    ],
)
def test_only_pending_records_of_this_region_pass(event_name, status, region, passes):
    pattern = stream_filter_pattern("us-east-1")
    assert matches_filter(pattern, record(event_name, status, region)) is passes


def test_a_record_without_a_new_image_does_not_pass():
    removed = {"eventName": "MODIFY", "dynamodb": {"OldImage": {}}}
    assert matches_filter(stream_filter_pattern("us-east-1"), removed) is False


def test_unsupported_pattern_operators_are_refused():
    with pytest.raises(ValueError):
        matches_filter({"eventName": [{"prefix": "IN"}]}, {"eventName": "INSERT"})
