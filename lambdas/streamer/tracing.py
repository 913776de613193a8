"""X-Ray tracing, only when configured: the SDK is imported lazily.

Importing aws_xray_sdk costs cold-start time, so a function with tracing off
never imports it. Everything the runtime asks of tracing goes through this
module (patching botocore, subsegments, annotations, the stored trace
header), so another tracer (OpenTelemetry through the ADOT layer,
docs/operations.md "Tracing") replaces this module's insides, not its callers.

One trace per request: the router stores its invocation's trace header on an
async request (`RequestItem.trace_header`), and the processor continues that
trace (`continued`): a segment with the stored trace id whose parent is the
router's segment, under which the processor's DynamoDB calls and `@connections`
posts (botocore, patched) are recorded. Annotations (`tenant_id`, `action`,
`request_id`) make the traces searchable: `annotation.request_id = "..."`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from streamer.logs import TRACE_HEADER_VARIABLE

#: The log fields put on the current trace entity as annotations (indexed for search).
ANNOTATED_FIELDS = ("tenant_id", "action", "request_id")

_enabled = False
_NOTHING = nullcontext()
#: Per thread: the continued segment, while `continued` runs.
_local = threading.local()


def enable_tracing(enabled: bool) -> None:
    """Patch botocore for X-Ray if `enabled` (once per process)."""
    global _enabled
    if not enabled or _enabled:
        return
    from aws_xray_sdk.core import patch, xray_recorder
    from aws_xray_sdk.core.lambda_launcher import LambdaContext

    if type(xray_recorder.context) is LambdaContext:
        xray_recorder.configure(context=_continuing_lambda_context())
    patch(["botocore"])
    _enabled = True


def subsegment(name: str) -> AbstractContextManager[Any]:
    """An X-Ray subsegment around a block when tracing is on; nothing otherwise (a shared
    `nullcontext`: the router enters this for every message)."""
    if not _enabled:
        return _NOTHING
    from aws_xray_sdk.core import xray_recorder

    return xray_recorder.in_subsegment(name)


def trace_header() -> str | None:
    """Where this point of the trace is, to store with a request: `Root=...;Parent=...;Sampled=...`.

    The parent is the open subsegment (the router's), else the function's segment
    as Lambda names it in `_X_AMZN_TRACE_ID` (docs.aws.amazon.com/lambda/latest/dg/
    configuration-envvars.html). None when tracing is off.
    """
    if not _enabled:
        return None
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.core.models.trace_header import TraceHeader

    entity = xray_recorder.current_subsegment()
    if entity is not None:
        return TraceHeader(entity.trace_id, entity.id, 1 if entity.sampled else 0).to_header_str()
    return os.environ.get(TRACE_HEADER_VARIABLE) or None


def annotate_request(fields: Mapping[str, Any]) -> None:
    """Annotate the open subsegment (or continued segment) with the request's tenant,
    action and id: indexed, so `annotation.request_id = "..."` finds it."""
    if not _enabled:
        return
    from aws_xray_sdk.core import xray_recorder

    entity = xray_recorder.current_subsegment() or getattr(_local, "segment", None)
    if entity is None:
        return
    for key in ANNOTATED_FIELDS:
        if fields.get(key) is not None:
            entity.put_annotation(key, str(fields[key]))


@contextmanager
def continued(header: str | None, name: str) -> Iterator[None]:
    """Continue the trace `header` names, in this thread, for the block.

    A segment named `name` with the header's trace id and parent becomes this
    thread's current entity, so the block's botocore calls are its subsegments;
    it is sent when the block ends (segment documents, `trace_id` and `parent_id`:
    docs.aws.amazon.com/xray/latest/devguide/xray-api-segmentdocuments.html).
    Nothing happens with tracing off or without a header.
    """
    if not _enabled or not header:
        yield
        return
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.core.models.segment import Segment
    from aws_xray_sdk.core.models.trace_header import TraceHeader

    parsed = TraceHeader.from_header_str(header)
    if not parsed.root:
        yield
        return
    segment = Segment(
        name, traceid=parsed.root, parent_id=parsed.parent, sampled=parsed.sampled != 0
    )
    local = xray_recorder.context._local
    saved = {key: getattr(local, key) for key in ("segment", "entities") if hasattr(local, key)}
    local.segment, local.entities = segment, [segment]
    _local.segment = segment
    try:
        yield
    except BaseException as error:
        segment.add_exception(error, _stack(error))
        raise
    finally:
        _local.segment = None
        for key in ("segment", "entities"):
            if key in saved:
                setattr(local, key, saved[key])
            elif hasattr(local, key):
                delattr(local, key)
        segment.close()
        if segment.sampled:
            xray_recorder.emitter.send_entity(segment)


def carried(target: Callable[[], None]) -> Callable[[], None]:
    """`target`, to run in another thread inside the continued segment open here (if any).

    A request's progress reporter thread sends and persists progress: its calls belong
    to the request's trace, not to the invocation's.
    """
    segment = getattr(_local, "segment", None)
    if not _enabled or segment is None:
        return target

    def run() -> None:
        from aws_xray_sdk.core import xray_recorder

        local = xray_recorder.context._local
        local.segment, local.entities = segment, [segment]
        _local.segment = segment
        try:
            target()
        finally:
            _local.segment = None
            local.segment, local.entities = None, []

    return run


def _stack(error: BaseException) -> Any:
    import traceback

    return traceback.extract_tb(error.__traceback__)


def _continuing_lambda_context() -> Any:
    """The SDK's Lambda context, kept from replacing a continued segment.

    `LambdaContext` swaps in the function's own (facade) segment whenever the
    invocation's trace id differs from the current segment's; while a thread
    continues a stored trace (`continued`), it must not.
    """
    from aws_xray_sdk.core.lambda_launcher import LambdaContext

    class ContinuingLambdaContext(LambdaContext):
        def _refresh_context(self) -> None:
            if getattr(_local, "segment", None) is None:
                super()._refresh_context()

    return ContinuingLambdaContext()
