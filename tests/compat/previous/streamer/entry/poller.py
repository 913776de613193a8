"""Scheduled poller: check the external work of due WAITING requests."""

from __future__ import annotations

from typing import Any

from streamer import invocation, runtime
from streamer.poller import poll_due
from streamer.processor import Processor
from streamer.protocol import now_ms


@invocation.entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    rt = runtime.current()
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    # A claim outlives this invocation by the lease margin: past it, another poller may take it.
    lease_ms = (int(remaining()) if callable(remaining) else 900_000) + (
        rt.settings.lease_margin_s * 1000
    )
    processor = Processor(rt.settings, rt.app, rt.delivery, lease_ms=lambda: lease_ms)
    return poll_due(processor, now_ms(), batch_size=rt.settings.poller_batch_size).to_dict()
