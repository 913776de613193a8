"""The local stack plays the API the Pulumi program declares, not one of its own."""

from __future__ import annotations

import pytest

from components.plan import Plan
from components.settings import ProcessorSettings
from local.apigateway import Api
from local.event_source_mapping import MappingConfig

from .graph import PROJECT

pytestmark = pytest.mark.infra


def test_local_gateway_checks_the_identity_sources_the_authorizer_is_given(dev: Plan) -> None:
    # GIVEN the WebSocket API's authorizer as the program creates it
    (authorizer,) = [
        r
        for r in dev.descendants(f"{PROJECT}-us-east-1-websocket")
        if r.type == "aws:apigatewayv2/authorizer:Authorizer"
    ]

    # WHEN its identity sources are compared with those the local gateway checks
    # THEN they are the same, so a handshake refused there is refused here
    assert tuple(authorizer.inputs["identitySources"]) == Api(region="x").identity_sources


def test_local_stream_mapping_batches_and_retries_as_the_deployed_one(prod: Plan) -> None:
    # GIVEN the program's default mapping settings, and prod's requests-stream mapping,
    # which states them (Pulumi.prod.yaml)
    defaults = ProcessorSettings()
    (mapping,) = [
        r
        for r in prod.descendants(f"{PROJECT}-us-east-1")
        if r.type == "aws:lambda/eventSourceMapping:EventSourceMapping"
    ]
    # WHEN the local stack's mapping is made with its defaults (`python -m local`)
    local = MappingConfig()

    # THEN it batches, waits, fans out and retries as the deployed one: a batch that
    # fails four times locally is not dropped after three, nor 100 records sent at once
    local_settings = (
        local.policy.batch_size,
        local.policy.maximum_batching_window_s,
        local.policy.maximum_retry_attempts,
        local.parallelization_factor,
    )
    assert local_settings == (
        defaults.batch_size,
        defaults.batch_window_s,
        defaults.max_retry_attempts,
        defaults.parallelization_factor,
    )
    assert local_settings == tuple(
        mapping.inputs[name]
        for name in (
            "batchSize",
            "maximumBatchingWindowInSeconds",
            "maximumRetryAttempts",
            "parallelizationFactor",
        )
    )
    # and gives up on a record at the same age, and splits a batch the function failed
    assert local.policy.maximum_record_age_s == defaults.max_record_age_s
    assert local.policy.maximum_record_age_s == mapping.inputs["maximumRecordAgeInSeconds"]
    assert local.policy.bisect_batch_on_function_error is True
    assert mapping.inputs["bisectBatchOnFunctionError"] is True
