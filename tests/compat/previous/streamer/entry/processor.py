"""DynamoDB Streams consumer of the requests table."""

from __future__ import annotations

import contextvars
import logging
import threading
from typing import Any

from streamer import invocation, runtime
from streamer.events import stream_records
from streamer.processor import Processor

log = logging.getLogger("streamer.processor")
_processor: Processor | None = None
_lock = threading.Lock()


def _current_processor() -> Processor:
    global _processor
    with _lock:
        rt = runtime.current()
        if _processor is None or _processor.settings is not rt.settings:
            _processor = Processor(rt.settings, rt.app, rt.delivery, lease_ms=_lease_ms)
        return _processor


# A context variable, not a thread-local: the batch's records are claimed in
# worker threads, which run in a copy of the invocation's context.
_context: contextvars.ContextVar[Any] = contextvars.ContextVar("lambda_context", default=None)


def _lease_ms() -> int:
    """This invocation's remaining time plus a margin: past it, the worker is dead."""
    context = _context.get()
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    base = int(remaining()) if callable(remaining) else 900_000
    return base + runtime.current().settings.lease_margin_s * 1000


@invocation.entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    processor = _current_processor()
    _context.set(context)
    records = stream_records(event)
    failures = processor.process_batch(records)
    if failures:
        log.warning("batch item failures", extra={"fields": {"count": len(failures)}})
    return {"batchItemFailures": [{"itemIdentifier": s} for s in failures]}
