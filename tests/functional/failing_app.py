"""A test application whose handlers fail in every way a handler can, on demand.

`payload.fail` names the failure: raised while validating (`validate_*`) or
while running (`run_*`). Used by the router's failure properties.
"""

from __future__ import annotations

from typing import Any

from streamer.errors import (
    ErrorCode,
    HandlerFailed,
    RequestCancelled,
    RetryableError,
    StreamerError,
    ValidationError,
)
from streamer.handlers import App, Handler, Progress, Request

#: What a handler may raise, by the name a payload gives it.
FAILURES = {
    "validation": lambda: ValidationError({"x": "bad"}),
    "handler_failed": lambda: HandlerFailed("no luck", retryable=True),
    "forbidden": lambda: StreamerError(ErrorCode.FORBIDDEN, "not you"),
    "retryable": lambda: RetryableError("busy"),
    "cancelled": lambda: RequestCancelled(),
    "bug": lambda: RuntimeError("secret arn:aws:dynamodb:us-east-1:1:table/x"),
    "key_error": lambda: KeyError("x"),
}
STAGES = ("validate", "run")


def failure_of(payload: dict[str, Any], stage: str) -> Exception | None:
    name = payload.get("fail")
    if not isinstance(name, str) or not name.startswith(f"{stage}_"):
        return None
    make = FAILURES.get(name.removeprefix(f"{stage}_"))
    return make() if make else None


class Failing(Handler):
    """Fails as `payload.fail` says, else answers `{"ok": true}`."""

    def __init__(self, action: str, estimated_duration: float) -> None:
        self.action = action
        self.estimated_duration = estimated_duration

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        failure = failure_of(payload, "validate")
        if failure is not None:
            raise failure
        return payload

    def process(self, request: Request, progress: Progress) -> Any:
        failure = failure_of(request.payload, "run")
        if failure is not None:
            raise failure
        return {"ok": True}


app = App()
app.register(Failing("fail_sync", estimated_duration=0.01))
app.register(Failing("fail_async", estimated_duration=60))
