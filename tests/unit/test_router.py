"""The router's pure decisions: sync or async, the sync answer, store failures told from bugs."""

from __future__ import annotations

import pytest
from botocore.exceptions import ReadTimeoutError
from pynamodb.exceptions import PutError

from streamer import store
from streamer.answers import failure_answer, is_store_failure
from streamer.application import sync_outcome
from streamer.execution import Outcome
from streamer.handlers import Handler
from streamer.models import CANCELLED, COMPLETED, FAILED, WAITING
from streamer.router import runs_async


class Estimated(Handler):
    def __init__(self, estimated_ms: int) -> None:
        self.action = "estimated"
        self.estimated_duration = estimated_ms / 1000


@pytest.mark.parametrize("estimated_ms, is_async", [(4999, False), (5000, False), (5001, True)])
def test_work_estimated_at_or_under_the_threshold_runs_sync(estimated_ms, is_async):
    assert runs_async(Estimated(estimated_ms), threshold_ms=5000) is is_async


@pytest.mark.parametrize(
    "status, answered",
    [(COMPLETED, COMPLETED), (FAILED, FAILED), (WAITING, FAILED), (CANCELLED, FAILED)],
)
def test_a_sync_run_answers_completed_or_failed(status, answered):
    error = {"code": "CANCELLED", "message": "x", "retryable": False}
    assert sync_outcome(Outcome(status, error=error)).status == answered


TIMED_OUT = ReadTimeoutError(endpoint_url="https://dynamodb", error="timed out")


def _raised_while_handling(inner: Exception, outer: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception:
            raise outer  # noqa: B904 - the implicit context is what is under test
    except Exception as error:
        return error


@pytest.mark.parametrize(
    "error, from_store",
    [
        (store.StoreUnavailable("ProvisionedThroughputExceededException"), True),
        (TIMED_OUT, True),
        # PynamoDB's error mapping failing on an error without a response
        (_raised_while_handling(PutError("x", TIMED_OUT), AttributeError("get")), True),
        (RuntimeError("a bug"), False),
        (_raised_while_handling(ValueError("x"), KeyError("y")), False),
    ],
)
def test_store_failures_are_told_from_bugs(error, from_store):
    assert is_store_failure(error) is from_store
    code = failure_answer(error, "r-1")["error"]["code"]
    assert code == ("UNAVAILABLE" if from_store else "INTERNAL_ERROR")
