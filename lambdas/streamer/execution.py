"""Running a handler and turning what it returns or raises into an outcome.

Shared by the router (sync requests) and the processor (async requests), so
both report failures with the same codes.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamer.config import MAX_RESULT_BYTES
from streamer.errors import ErrorCode, RequestCancelled, RetryableError, StreamerError
from streamer.handlers import Handler, Progress, Request, Waiting
from streamer.models import CANCELLED, COMPLETED, FAILED, WAITING
from streamer.transitions import RETRY

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: str
    result: Any = None
    error: dict[str, Any] | None = None
    waiting: Waiting | None = None


def internal_error(message: str = "internal error") -> StreamerError:
    """An INTERNAL_ERROR with a correlation id; log the cause with the same id."""
    correlation_id = uuid.uuid4().hex
    return StreamerError(
        ErrorCode.INTERNAL_ERROR, message, details={"correlation_id": correlation_id}
    )


#: `json.dumps(result, allow_nan=False, separators=(",", ":"))`, its encoder made once.
_RESULT_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def checked_result(result: Any) -> Outcome:
    """Accept a handler's result if it is JSON and fits in a WebSocket message."""
    try:
        encoded = _RESULT_ENCODER.encode(result)
    except (TypeError, ValueError):
        return Outcome(
            FAILED,
            error=StreamerError(
                ErrorCode.PROCESSING_FAILED, "the handler's result is not JSON-serialisable"
            ).to_dict(),
        )
    size = len(encoded.encode("utf-8"))
    if size > MAX_RESULT_BYTES:
        return Outcome(
            FAILED,
            error=StreamerError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"the result is {size} bytes; results are limited to {MAX_RESULT_BYTES} bytes, "
                "return a reference (such as an object URL) to larger data",
                details={"size_bytes": size, "limit_bytes": MAX_RESULT_BYTES},
            ).to_dict(),
        )
    return Outcome(COMPLETED, result=json.loads(encoded))


def run_handler(handler: Handler, request: Request, progress: Progress) -> Outcome:
    """Run `handler.process`; never raises."""
    return _run(lambda: handler.process(request, progress), request)


def run_poll(
    handler: Handler, request: Request, state: dict[str, Any], progress: Progress
) -> Outcome:
    """Run `handler.poll` on a WAITING request; never raises."""
    return _run(lambda: handler.poll(request, state, progress), request)


def _run(call: Callable[[], Any], request: Request) -> Outcome:
    try:
        result = call()
    except RequestCancelled:
        return Outcome(
            CANCELLED,
            error=StreamerError(ErrorCode.CANCELLED, "the request was cancelled").to_dict(),
        )
    except RetryableError as error:
        log.warning("handler asked for a retry", extra={"fields": {"reason": type(error).__name__}})
        return Outcome(
            RETRY,
            error=StreamerError(
                ErrorCode.PROCESSING_FAILED, "the handler failed temporarily", retryable=True
            ).to_dict(),
        )
    except StreamerError as error:
        return Outcome(FAILED, error=error.to_dict())
    except Exception:
        failure = StreamerError(
            ErrorCode.PROCESSING_FAILED,
            f"action {request.action!r} failed",
            details={"correlation_id": uuid.uuid4().hex},
        )
        log.exception(
            "handler raised",
            extra={"fields": {"correlation_id": failure.details["correlation_id"]}},
        )
        return Outcome(FAILED, error=failure.to_dict())
    if isinstance(result, Waiting):
        return Outcome(WAITING, waiting=result)
    return checked_result(result)
