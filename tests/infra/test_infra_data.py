"""Tables and the processor's mapping: schema from the runtime, replicas, per-region filters."""

from __future__ import annotations

import json

import pytest

from components.plan import Plan
from streamer import schema

from .graph import PROJECT, alias, requests_stream_arn

pytestmark = pytest.mark.infra

REGIONS = [("dev", "us-east-1"), ("prod", "us-east-1"), ("prod", "eu-west-1")]


@pytest.mark.parametrize("stack", ["dev", "prod"])
@pytest.mark.parametrize("table", schema.TABLES, ids=lambda t: t.logical_name)
def test_table_follows_the_shared_schema(
    request: pytest.FixtureRequest, stack: str, table: schema.TableSchema
) -> None:
    # GIVEN the stack's table for one schema
    plan: Plan = request.getfixturevalue(stack)
    inputs = plan.named(f"{PROJECT}-tables-{table.logical_name}").inputs

    # WHEN its keys, indexes and settings are read
    attributes = {a["name"]: a["type"] for a in inputs["attributes"]}
    indexes = {
        index["name"]: (
            {k["keyType"]: k["attributeName"] for k in index["keySchemas"]},
            index["projectionType"],
            tuple(index.get("nonKeyAttributes") or ()),
        )
        for index in inputs.get("globalSecondaryIndexes", [])
    }

    # THEN keys and indexes are the schema's, and it is on-demand, TTL'd, recoverable, encrypted
    assert inputs["hashKey"] == table.hash_key
    assert inputs.get("rangeKey") == table.range_key
    assert attributes == {name: table.attribute_type(name) for name in table.key_attributes}
    assert indexes == {
        index.name: (
            {"HASH": index.hash_key, **({"RANGE": index.range_key} if index.range_key else {})},
            index.projection,
            index.included,
        )
        for index in table.indexes
    }
    assert inputs["billingMode"] == "PAY_PER_REQUEST"
    assert inputs["ttl"] == {"attributeName": table.ttl_attribute, "enabled": True}
    assert inputs["pointInTimeRecovery"] == {"enabled": True}
    assert inputs["serverSideEncryption"] == {"enabled": True}


def test_dev_tables_are_single_region_and_only_requests_streams(dev: Plan) -> None:
    # GIVEN the dev tables  WHEN their replicas and streams are read
    tables = {
        t.logical_name: dev.named(f"{PROJECT}-tables-{t.logical_name}") for t in schema.TABLES
    }

    # THEN nothing is replicated and only the requests table has a stream (both images)
    for logical, table in tables.items():
        assert table.inputs.get("replicas", []) == []
        assert table.inputs["streamEnabled"] is (logical == "requests")
    assert tables["requests"].inputs["streamViewType"] == schema.REQUESTS.stream_view_type


def test_prod_tables_are_global_with_a_replica_in_the_second_region(prod: Plan) -> None:
    for table in schema.TABLES:
        # GIVEN one prod table, created in us-east-1
        resource = prod.named(f"{PROJECT}-tables-{table.logical_name}")

        # WHEN its replicas are read
        replicas = resource.inputs["replicas"]

        # THEN eu-west-1 holds a replica with PITR and deletion protection, and the stream
        # global tables need (both images) is on
        assert resource.region == "us-east-1"
        assert [r["regionName"] for r in replicas] == ["eu-west-1"]
        assert replicas[0]["pointInTimeRecovery"] is True
        assert replicas[0]["deletionProtectionEnabled"] is True
        assert resource.inputs["deletionProtectionEnabled"] is True
        assert resource.inputs["streamEnabled"] is True
        assert resource.inputs["streamViewType"] == "NEW_AND_OLD_IMAGES"


@pytest.mark.parametrize(("stack", "region"), REGIONS)
def test_mapping_reads_only_its_regions_pending_requests(
    request: pytest.FixtureRequest, stack: str, region: str
) -> None:
    # GIVEN the region's processor mapping
    plan: Plan = request.getfixturevalue(stack)
    mapping = plan.named(f"{PROJECT}-{region}-processor-stream-mapping").inputs

    # WHEN its source and filter are read
    (only_filter,) = mapping["filterCriteria"]["filters"]
    pattern = json.loads(only_filter["pattern"])

    # THEN it reads this region's replica stream, new or changed PENDING items of this region
    assert mapping["eventSourceArn"] == requests_stream_arn(plan, region)
    assert f":{region}:" in mapping["eventSourceArn"]
    assert mapping["functionName"] == alias(plan, region, "processor").outputs["arn"]
    assert pattern == {
        "eventName": ["INSERT", "MODIFY"],
        "dynamodb": {"NewImage": {"status": {"S": ["PENDING"]}, "origin_region": {"S": [region]}}},
    }


@pytest.mark.parametrize(
    ("stack", "region", "parallelization"),
    [("dev", "us-east-1", 2), ("prod", "us-east-1", 10), ("prod", "eu-west-1", 10)],
)
def test_mapping_failures_are_bounded_and_end_in_the_dead_letter_queue(
    request: pytest.FixtureRequest, stack: str, region: str, parallelization: int
) -> None:
    # GIVEN the region's processor mapping and dead-letter queue
    plan: Plan = request.getfixturevalue(stack)
    mapping = plan.named(f"{PROJECT}-{region}-processor-stream-mapping").inputs
    queue = plan.named(f"{PROJECT}-{region}-processor-dead-letters")

    # WHEN its failure handling is read
    destination = mapping["destinationConfig"]["onFailure"]["destinationArn"]

    # THEN it reports item failures, bisects, retries a bounded number of times, drops old
    # records, sends what it gives up on to the queue, and is sized from the configuration
    assert mapping["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["bisectBatchOnFunctionError"] is True
    assert 0 <= mapping["maximumRetryAttempts"] <= 10
    assert 60 <= mapping["maximumRecordAgeInSeconds"] <= 3600
    assert destination == queue.outputs["arn"]
    assert queue.inputs["sqsManagedSseEnabled"] is True
    assert mapping["startingPosition"] == "TRIM_HORIZON"
    assert mapping["batchSize"] == 10
    assert mapping["maximumBatchingWindowInSeconds"] == 0
    assert mapping["parallelizationFactor"] == parallelization
