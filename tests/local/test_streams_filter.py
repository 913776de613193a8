"""The processor and its event source mapping take the same records: one declaration.

`streamer.record_filter.processor_records` gives both the filter pattern the mapping is
created with (evaluated here by the local mapping's evaluator of Lambda's filter rules)
and the processor's own test (`is_actionable`). Over every event, status and region they
must agree, and take exactly the INSERT or MODIFY records of a PENDING request of the
processor's own region.
"""

from __future__ import annotations

import itertools

import pytest

from local.streams import matches_filter, stream_record
from streamer import models
from streamer.events import StreamRecord
from streamer.processor import is_actionable
from streamer.record_filter import processor_records

OWN, OTHER = "us-east-1", "eu-west-1"
ARN = f"arn:aws:dynamodb:{OWN}:123456789012:table/streamer-requests/stream/2026-01-01T00:00:00"
STATUSES = (
    models.PENDING,
    models.PROCESSING,
    models.RETRYING,
    models.WAITING,
    models.COMPLETED,
    models.FAILED,
    models.CANCELLED,
)
EVENTS = ("INSERT", "MODIFY", "REMOVE")


def record(event_name: str, status: str, origin_region: str) -> dict:
    """A record of the requests stream as Lambda delivers it: REMOVE has no new image,
    INSERT no old one."""
    keys = {"request_key": {"S": "t#u#r1"}}
    image = {**keys, "status": {"S": status}, "origin_region": {"S": origin_region}}
    return stream_record(
        event_name,
        keys,
        new_image=None if event_name == "REMOVE" else image,
        old_image=None if event_name == "INSERT" else {**image, "status": {"S": "PENDING"}},
        sequence_number="100",
        created_s=1767268800.0,
        region=OWN,
        event_source_arn=ARN,
        event_id="e1",
    )


@pytest.mark.parametrize(
    ("event_name", "status", "origin_region"),
    list(itertools.product(EVENTS, STATUSES, (OWN, OTHER))),
)
def test_the_mapping_filter_and_the_processor_agree(
    event_name: str, status: str, origin_region: str
) -> None:
    # GIVEN a record of the requests stream of the processor's region
    raw = record(event_name, status, origin_region)

    # WHEN the deployed filter pattern and the processor each judge it
    passes_filter = matches_filter(processor_records(OWN).pattern(), raw)
    processor_runs_it = is_actionable(StreamRecord.from_record(raw), OWN)

    # THEN they agree, and only new or re-queued PENDING requests of this region pass
    expected = event_name in ("INSERT", "MODIFY") and status == "PENDING" and origin_region == OWN
    assert passes_filter is processor_runs_it is expected


def test_the_filter_takes_the_statuses_the_lifecycle_table_claims_from() -> None:
    # GIVEN the lifecycle table, WHEN the filter's statuses are read, THEN they are PENDING
    assert dict(processor_records(OWN).new_image)["status"] == (models.PENDING,)


def test_a_record_without_a_new_image_does_not_pass() -> None:
    removed = {"eventName": "MODIFY", "dynamodb": {"OldImage": {}}}
    assert matches_filter(processor_records(OWN).pattern(), removed) is False


def test_unsupported_pattern_operators_are_refused() -> None:
    with pytest.raises(ValueError):
        matches_filter({"eventName": [{"prefix": "IN"}]}, {"eventName": "INSERT"})
