"""Typed errors: one class per protocol error code, plus the client's own.

Callers decide by type or by `code`, never by message text. Every error
carries the protocol's `code`, `message`, `details` and `retryable`; errors
about a request also say which one (`request_id`) and, when the request ran
and ended, how (`request_status`: FAILED or CANCELLED; None when the message
was refused before anything was stored).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ErrorInfo:
    """The protocol's error object: `code`, `message`, `details`, `retryable`."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    retryable: bool = False

    @classmethod
    def from_json(cls, value: Any) -> ErrorInfo:
        """Read an error object; a malformed one still yields an error, never a crash."""
        if not isinstance(value, dict):
            return cls("INTERNAL_ERROR", "malformed error object from the server")
        details = value.get("details")
        return cls(
            code=str(value.get("code", "INTERNAL_ERROR")),
            message=str(value.get("message", "")),
            details=details if isinstance(details, dict) else {},
            retryable=value.get("retryable") is True,
        )

    def to_json(self) -> dict[str, Any]:
        """The error object as the protocol writes it."""
        data: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            data["details"] = self.details
        data["retryable"] = self.retryable
        return data


class StreamerError(Exception):
    """Base of every error this client raises about Streamer."""

    def __init__(
        self,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        retryable: bool = False,
        *,
        request_id: str | None = None,
        request_status: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.details = details or {}
        self.retryable = retryable
        self.request_id = request_id
        self.request_status = request_status

    def to_json(self) -> dict[str, Any]:
        """The error as plain JSON: the protocol's error object plus the request it is about."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        error["retryable"] = self.retryable
        data: dict[str, Any] = {}
        if self.request_id is not None:
            data["request_id"] = self.request_id
        if self.request_status is not None:
            data["status"] = self.request_status
        data["error"] = error
        return data


class InvalidMessage(StreamerError):
    """INVALID_MESSAGE: not JSON, not an object, or a field of the wrong type."""


class InvalidAction(StreamerError):
    """INVALID_ACTION: the server has no handler for this action."""


class ValidationError(StreamerError):
    """VALIDATION_ERROR: the handler rejected the payload; `details` names the fields."""


class PayloadTooLarge(StreamerError):
    """PAYLOAD_TOO_LARGE: over a size limit (the client also raises it before sending)."""


class Unauthorized(StreamerError):
    """UNAUTHORIZED: identity missing."""


class Forbidden(StreamerError):
    """FORBIDDEN: not allowed to do this."""


class NotFound(StreamerError):
    """NOT_FOUND: unknown request id (or one of another tenant or user)."""


class Conflict(StreamerError):
    """CONFLICT: the client `id` was reused with a different action or payload."""


class RateLimited(StreamerError):
    """RATE_LIMITED: too many messages on this connection; retry later."""


class RequestTimeout(StreamerError):
    """TIMEOUT: the handler ran past its deadline."""


class ProcessingFailed(StreamerError):
    """PROCESSING_FAILED: the handler raised; `retryable` says whether a retry may succeed."""


class RequestCancelled(StreamerError):
    """CANCELLED: the request was cancelled."""


class Unavailable(StreamerError):
    """UNAVAILABLE: the action or a dependency is out for now; nothing was stored.

    Retryable; `details.retry_after_ms` says when to try again. The client
    sends the message again itself until its `unavailable_deadline_s` has
    passed, so a caller sees this only after that.
    """


class InternalError(StreamerError):
    """INTERNAL_ERROR: anything else; `details.correlation_id` finds it in the server's logs."""


ERROR_TYPES: dict[str, type[StreamerError]] = {
    "INVALID_MESSAGE": InvalidMessage,
    "INVALID_ACTION": InvalidAction,
    "VALIDATION_ERROR": ValidationError,
    "PAYLOAD_TOO_LARGE": PayloadTooLarge,
    "UNAUTHORIZED": Unauthorized,
    "FORBIDDEN": Forbidden,
    "NOT_FOUND": NotFound,
    "CONFLICT": Conflict,
    "RATE_LIMITED": RateLimited,
    "TIMEOUT": RequestTimeout,
    "PROCESSING_FAILED": ProcessingFailed,
    "CANCELLED": RequestCancelled,
    "UNAVAILABLE": Unavailable,
    "INTERNAL_ERROR": InternalError,
}


def error_from_info(
    info: ErrorInfo, *, request_id: str | None, request_status: str | None
) -> StreamerError:
    """The typed error for a protocol error object (StreamerError for an unknown code)."""
    error_type = ERROR_TYPES.get(info.code, StreamerError)
    return error_type(
        info.code,
        info.message,
        dict(info.details),
        info.retryable,
        request_id=request_id,
        request_status=request_status,
    )


class NotSynchronous(StreamerError):
    """`send` got an acknowledgment: the action is async and its result comes later.

    The request was stored and runs; `request_id` names it for `subscribe`.
    """


class SubscriptionEnded(StreamerError):
    """`unsubscribe` was called for a request this client was still awaiting."""


class NoAnswer(StreamerError):
    """The server did not answer a message within the client's `answer_timeout_s`.

    Code NO_ANSWER, retryable. The message may or may not have been stored:
    calling again with the same request id is safe (it starts no second run).
    """

    def __init__(self, message: str, *, request_id: str | None) -> None:
        super().__init__("NO_ANSWER", message, retryable=True, request_id=request_id)


class ConnectionFailed(StreamerError):
    """The client could not connect, or is closed."""

    def __init__(self, message: str, *, code: str = "CONNECTION_FAILED") -> None:
        super().__init__(code, message, retryable=True)


class ConnectionLost(ConnectionFailed):
    """The connection dropped and every reconnect attempt of the policy failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="CONNECTION_LOST")


class ConnectionRefused(ConnectionFailed):
    """The server refused the WebSocket handshake with an HTTP status.

    401 (code UNAUTHORIZED) means a missing, expired or invalid token; 403
    (FORBIDDEN) a valid token whose tenant is not allowed. Neither is
    retryable with the same token; other statuses (502, 503) are.
    """

    def __init__(self, status_code: int) -> None:
        code = {401: "UNAUTHORIZED", 403: "FORBIDDEN"}.get(status_code, "CONNECTION_REFUSED")
        super().__init__(f"handshake refused with HTTP {status_code}", code=code)
        self.status_code = status_code
        self.details = {"status_code": status_code}
        self.retryable = status_code not in (401, 403)


class TokenFailed(ConnectionFailed):
    """The token provider failed (raised, or kept handing out refused tokens) too often in a row."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="TOKEN_FAILED")
