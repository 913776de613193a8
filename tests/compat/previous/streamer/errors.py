"""Error codes of the wire protocol and the exceptions that carry them.

Decisions (retry, status, answer) are made on these types and codes, never on
error text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """The `error.code` values of docs/protocol.md section 3."""

    INVALID_MESSAGE = "INVALID_MESSAGE"
    INVALID_ACTION = "INVALID_ACTION"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    TIMEOUT = "TIMEOUT"
    PROCESSING_FAILED = "PROCESSING_FAILED"
    CANCELLED = "CANCELLED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class StreamerError(Exception):
    """An error that becomes a protocol `error` object as it is.

    Its message is shown to the client, so it must never hold a stack trace,
    a token or an internal resource name.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retryable = retryable

    def to_dict(self) -> dict[str, Any]:
        """The protocol's `error` object."""
        error: dict[str, Any] = {
            "code": self.code.value,
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.details:
            error["details"] = self.details
        return error


class Unavailable(StreamerError):
    """A dependency (the store) cannot be reached for now and nothing was stored.

    Always retryable; `details.retry_after_ms` says when to try again.
    """

    def __init__(self, message: str, *, retry_after_ms: int) -> None:
        super().__init__(
            ErrorCode.UNAVAILABLE,
            message,
            details={"retry_after_ms": retry_after_ms},
            retryable=True,
        )


class ValidationError(StreamerError):
    """A handler refused its payload; `fields` maps each bad field to why."""

    def __init__(self, fields: dict[str, str], message: str = "invalid payload") -> None:
        super().__init__(ErrorCode.VALIDATION_ERROR, message, details={"fields": dict(fields)})
        self.fields = dict(fields)


class RetryableError(Exception):
    """Raised by a handler for a transient failure: the request is run again later."""


class RequestCancelled(Exception):
    """Raised inside a handler once its request was cancelled; let it propagate."""


class HandlerFailed(StreamerError):
    """Raised by a handler to fail its request with a message the client may see."""

    def __init__(
        self, message: str, *, details: dict[str, Any] | None = None, retryable: bool = False
    ) -> None:
        super().__init__(ErrorCode.PROCESSING_FAILED, message, details=details, retryable=retryable)
