"""Publish function: notifications from SNS and EventBridge to topics and users."""

from __future__ import annotations

from typing import Any

from streamer import invocation, runtime
from streamer.publish import handle_event


@invocation.entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    rt = runtime.current()
    return handle_event(event, rt.delivery, rt.settings.topic_retention_s)
