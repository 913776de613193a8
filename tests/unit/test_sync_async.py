"""The sync/async decision and what a sync run answers (pure: no store, no threads).

docs/protocol.md section 4: a handler whose estimated duration is at or under
the threshold runs synchronously and answers `response`; one over it is queued
and answered `acknowledgment`.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from streamer.application import new_request_id, replay_response, runs_async, sync_outcome
from streamer.errors import ErrorCode, StreamerError
from streamer.execution import Outcome
from streamer.handlers import Handler, Waiting
from streamer.models import RequestItem

THRESHOLD_MS = 5000


def estimated(duration: float | timedelta) -> Handler:
    handler = Handler()
    handler.estimated_duration = duration
    return handler


def test_a_request_id_the_server_makes_is_a_random_version_4_uuid() -> None:
    ids = {new_request_id() for _ in range(200)}

    assert len(ids) == 200
    for request_id in ids:
        prefix, _, digits = request_id.partition("-")
        parsed = uuid.UUID(hex=digits)
        assert (prefix, len(digits), parsed.hex) == ("req", 32, digits)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)


def test_a_handler_estimated_at_exactly_the_threshold_runs_sync() -> None:
    assert runs_async(estimated(5.0), THRESHOLD_MS) is False


def test_a_handler_estimated_one_ms_over_the_threshold_runs_async() -> None:
    assert runs_async(estimated(5.001), THRESHOLD_MS) is True


def test_a_handler_estimated_one_ms_under_the_threshold_runs_sync() -> None:
    assert runs_async(estimated(timedelta(milliseconds=4999)), THRESHOLD_MS) is False


def test_a_threshold_of_zero_queues_everything_but_instant_work() -> None:
    assert runs_async(estimated(0), 0) is False
    assert runs_async(estimated(0.001), 0) is True


def test_a_sync_run_that_completed_answers_its_result() -> None:
    outcome = Outcome("COMPLETED", result={"n": 1})
    assert sync_outcome(outcome) is outcome


def test_a_sync_run_that_failed_answers_its_error() -> None:
    outcome = Outcome("FAILED", error={"code": "PROCESSING_FAILED"})
    assert sync_outcome(outcome) is outcome


def test_a_sync_action_that_waits_for_external_work_fails_and_says_to_estimate_it_async() -> None:
    answer = sync_outcome(Outcome("WAITING", waiting=Waiting(state={}, poll_after_s=1)))
    assert answer.status == "FAILED"
    assert answer.result is None
    assert answer.error == {
        "code": "PROCESSING_FAILED",
        "message": "a sync action cannot wait for external work; estimate it as async",
        "retryable": False,
    }


@pytest.mark.parametrize("status", ["RETRY", "CANCELLED"])
def test_a_sync_run_cannot_retry_or_be_cancelled_it_fails_with_the_run_s_error(
    status: str,
) -> None:
    error = {"code": "TIMEOUT", "message": "deadline", "retryable": True}
    assert sync_outcome(Outcome(status, error=error)) == Outcome("FAILED", error=error)


def stored(status: str, **fields: Any) -> RequestItem:
    return RequestItem("k", request_id="r-1", status=status, **fields)


def test_a_repeated_sync_request_gets_the_stored_result() -> None:
    assert replay_response(stored("COMPLETED", result={"n": 2})) == {
        "type": "response",
        "request_id": "r-1",
        "success": True,
        "data": {"n": 2},
    }


def test_a_repeated_sync_request_gets_the_stored_error() -> None:
    error = {"code": "PROCESSING_FAILED", "message": "no", "retryable": False}
    assert replay_response(stored("FAILED", error=error)) == {
        "type": "response",
        "request_id": "r-1",
        "success": False,
        "error": error,
    }


def test_a_repeat_of_a_sync_request_still_running_is_a_retryable_conflict() -> None:
    with pytest.raises(StreamerError) as raised:
        replay_response(stored("PROCESSING"))
    assert raised.value.to_dict() == {
        "code": ErrorCode.CONFLICT.value,
        "message": "a request with this id is still running",
        "retryable": True,
        "details": {"request_id": "r-1"},
    }


def test_a_repeat_of_a_running_sync_request_is_told_when_its_id_frees_up() -> None:
    # GIVEN a sync request stored PROCESSING at t=10,000 ms, whose item a repeat may take
    # over once it is older than the sync deadline and its margin (here 7,000 ms)
    item = stored("PROCESSING", created_at=10_000)

    # WHEN it is repeated at t=12,500 ms
    with pytest.raises(StreamerError) as raised:
        replay_response(item, now_ms=12_500, stale_after_ms=7_000)

    # THEN the conflict says to come back in 4,500 ms (a write whose answer was lost in an
    # outage may still have stored it: the repeat then runs once the item is stale)
    assert raised.value.to_dict()["details"] == {"request_id": "r-1", "retry_after_ms": 4_500}
    with pytest.raises(StreamerError) as later:
        replay_response(item, now_ms=17_000, stale_after_ms=7_000)
    assert later.value.to_dict()["details"]["retry_after_ms"] == 1


def test_without_both_the_time_and_the_stale_age_the_conflict_names_no_wait() -> None:
    item = stored("PROCESSING", created_at=10_000)
    for given in ({"now_ms": 12_500}, {"stale_after_ms": 7_000}):
        with pytest.raises(StreamerError) as raised:
            replay_response(item, **given)
        assert raised.value.to_dict()["details"] == {"request_id": "r-1"}
