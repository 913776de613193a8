"""How the store reports DynamoDB's answers: a lost race is a value, the rest `StoreUnavailable`.

A conditional write whose condition failed returns False (another writer
won, or the request moved on). Anything else DynamoDB or the network does
(throttling past the client's retries, a refused or dropped connection, a
timeout) raises `StoreUnavailable`, so callers can ask to be retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import PynamoDBException

T = TypeVar("T")

#: What a failed call may raise: PynamoDB wraps botocore's errors, but not all of them.
FAILURES = (PynamoDBException, BotoCoreError, ClientError)


class StoreUnavailable(Exception):
    """DynamoDB could not be reached or refused the call (e.g. throttling)."""


def response_code(error: Exception) -> str | None:
    """DynamoDB's error code behind `error`, if DynamoDB answered at all.

    Not PynamoDB's `cause_response_code`: botocore's `HTTPClientError`s (a
    connection closed, a read timed out) carry `response = None`, on which that
    property raises AttributeError.
    """
    cause = error.cause if isinstance(error, PynamoDBException) else error
    response = getattr(cause, "response", None)
    if not isinstance(response, dict):
        return None
    return response.get("Error", {}).get("Code")


def unavailable(error: Exception) -> StoreUnavailable:
    return StoreUnavailable(response_code(error) or type(error).__name__)


def guard(call: Callable[[], T]) -> T:
    """Run a read or an unconditional write; its failures raise `StoreUnavailable`."""
    try:
        return call()
    except FAILURES as error:
        raise unavailable(error) from error


def conditional(call: Callable[[], Any]) -> bool:
    """Run a conditional write: True if it applied, False if its condition failed."""
    try:
        call()
    except FAILURES as error:
        if response_code(error) == "ConditionalCheckFailedException":
            return False
        raise unavailable(error) from error
    return True


def get_or_none(model: type[T], *keys: str, consistent: bool = False) -> T | None:
    """`model.get`, None for an item that does not exist."""
    try:
        return model.get(*keys, consistent_read=consistent)  # type: ignore[attr-defined]
    except model.DoesNotExist:  # type: ignore[attr-defined]
        return None
