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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from streamer.logs import TRACE_HEADER_VARIABLE

#: The log fields put on the current trace entity as annotations (indexed for search).
ANNOTATED_FIELDS = ("tenant_id", "action", "request_id")

_enabled = False
#: Per thread: the continued segment, while `continued` runs.
_local = threading.local()


def enable_tracing(enabled: bool) -> None:
    """Patch botocore for X-Ray if `enabled` (once per process)."""
    global _enabled
    if not enabled or _enabled:
        return
    from aws_xray_sdk.core import patch, xray_recorder

    xray_recorder.configure(context=_continuing_context(xray_recorder.context))
    patch(["botocore"])
    _enabled = True


@contextmanager
def subsegment(name: str) -> Iterator[None]:
    """An X-Ray subsegment around a block when tracing is on; nothing otherwise."""
    if not _enabled:
        yield
        return
    from aws_xray_sdk.core import xray_recorder

    with xray_recorder.in_subsegment(name):
        yield


def trace_header() -> str | None:
    """This invocation's trace header (`Root=...;Parent=...;Sampled=...`) when tracing is on.

    Lambda sets `_X_AMZN_TRACE_ID` for each invocation (docs.aws.amazon.com/lambda/latest/
    dg/configuration-envvars.html); its `Parent` is the function's segment.
    """
    if not _enabled:
        return None
    return os.environ.get(TRACE_HEADER_VARIABLE) or None


def annotate_request(fields: Mapping[str, Any]) -> None:
    """Annotate the current trace entity with the request's tenant, action and id."""
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
    """Continue the trace `header` names in this thread, for the block; nothing without one.

    The segment is sent when the block ends (X-Ray segment documents, `trace_id` and
    `parent_id`: docs.aws.amazon.com/xray/latest/devguide/xray-api-segmentdocuments.html).
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
        name, traceid=parsed.root, parent_id=parsed.parent, sampled=parsed.sampled != "0"
    )
    _local.segment = segment
    previous = _swap_entities(xray_recorder.context, [segment])
    try:
        yield
    finally:
        _local.segment = None
        _swap_entities(xray_recorder.context, previous)
        segment.close()
        if segment.sampled:
            xray_recorder.emitter.send_entity(segment)


def _swap_entities(context: Any, entities: list[Any] | None) -> list[Any] | None:
    """Make `entities` this thread's open trace entities; return the ones they replace."""
    local = context._local
    previous = getattr(local, "entities", None)
    local.entities = entities
    local.segment = entities[0] if entities else None
    return previous


def _continuing_context(context: Any) -> Any:
    """The recorder's context, kept from replacing a continued segment.

    In Lambda the SDK's `LambdaContext` swaps in the function's own segment whenever
    the invocation's trace id differs from the current segment's; while this
    thread continues a stored trace, it must not.
    """

    class ContinuingContext(type(context)):  # type: ignore[misc]
        def _refresh_context(self) -> None:
            if getattr(_local, "segment", None) is not None:
                return
            super()._refresh_context()

        def get_trace_entity(self) -> Any:
            if getattr(_local, "segment", None) is not None:
                entities = getattr(self._local, "entities", None)
                return entities[-1] if entities else _local.segment
            return super().get_trace_entity()

    continuing = ContinuingContext.__new__(ContinuingContext)
    continuing.__dict__.update(context.__dict__)
    return continuing
