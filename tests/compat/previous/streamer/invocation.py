"""What every entry point does around its invocation: log fields in, metrics out.

    @invocation.entry_point
    def handler(event, context): ...

binds the invocation's log fields (`logs.lambda_context`: Lambda request id,
function name and version, cold start, X-Ray trace id, the debug sample) and
writes the metrics recorded during the invocation as one flush of EMF
documents (`metrics.flush`) when it returns or raises.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from streamer import metrics
from streamer.logs import lambda_context

Result = TypeVar("Result")


def entry_point(handler: Callable[[Any, Any], Result]) -> Callable[[Any, Any], Result]:
    """Wrap a Lambda handler `(event, context)` with the invocation's logs and metrics."""

    @functools.wraps(handler)
    def invoke(event: Any, context: Any) -> Result:
        try:
            with lambda_context(context):
                return handler(event, context)
        finally:
            metrics.flush()

    return invoke
