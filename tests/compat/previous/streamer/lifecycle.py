"""Lifecycle events: an EventBridge event when an async request ends, for other services.

Optional: only with `STREAMER_EVENT_BUS` set. Sent after the request's
`complete` went out, with short timeouts and few retries; a failure is
logged and never changes or delays the request's outcome.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from streamer import aws, config
from streamer.models import CANCELLED, COMPLETED, FAILED, RequestItem

log = logging.getLogger(__name__)

SOURCE = "streamer"
DETAIL_TYPES = {
    COMPLETED: "Request Completed",
    FAILED: "Request Failed",
    CANCELLED: "Request Cancelled",
}


def event_entry(item: RequestItem, bus: str, now: int) -> dict[str, Any]:
    """The PutEvents entry of an ended request (its status decides the detail-type)."""
    detail = {
        "tenant_id": item.tenant_id,
        "user_id": item.user_id,
        "action": item.action,
        "request_id": item.request_id,
        "status": item.status,
        "duration_ms": max(0, now - int(item.created_at)),
    }
    if item.status != COMPLETED and item.error:
        detail["error_code"] = item.error.get("code")
    return {
        "Source": SOURCE,
        "DetailType": DETAIL_TYPES[item.status],
        "Detail": json.dumps(detail, separators=(",", ":")),
        "EventBusName": bus,
    }


class LifecyclePublisher:
    """Puts lifecycle events on one bus through a lazily created `events` client."""

    def __init__(self, bus: str, region: str, client_factory: Callable[[], Any] | None = None):
        self.bus = bus
        self._region = region
        self._factory = client_factory or self._make_client
        self._client: Any = None
        self._lock = threading.Lock()

    def _make_client(self) -> Any:
        from botocore.config import Config

        return aws.create_client(
            "events",
            region_name=self._region,
            config=Config(
                retries={"mode": "standard", "total_max_attempts": 2},
                connect_timeout=1,
                read_timeout=2,
            ),
        )

    def request_ended(self, item: RequestItem, now: int) -> bool:
        """Publish the event of an ended request; False (logged) if it was not accepted."""
        if item.status not in DETAIL_TYPES:
            return False
        try:
            with self._lock:
                if self._client is None:
                    self._client = self._factory()
                client = self._client
            answer = client.put_events(Entries=[event_entry(item, self.bus, now)])
            if answer.get("FailedEntryCount"):
                entry = (answer.get("Entries") or [{}])[0]
                raise RuntimeError(entry.get("ErrorCode") or "entry refused")
        except Exception as error:
            log.warning(
                "lifecycle event not published",
                extra={
                    "fields": {
                        "request_id": item.request_id,
                        "error_code": getattr(error, "response", {})
                        .get("Error", {})
                        .get("Code", type(error).__name__),
                    }
                },
            )
            return False
        return True


_publisher: LifecyclePublisher | None = None
_publisher_lock = threading.Lock()


def publisher() -> LifecyclePublisher | None:
    """The process's publisher for the configured bus; None when no bus is configured.

    Read from the environment on each call (cheap), so the processor, the
    sweeper and the router's cancel share one client without being handed one.
    """
    global _publisher
    bus = os.environ.get(config.EVENT_BUS, "").strip()
    if not bus:
        return None
    region = os.environ.get(config.REGION) or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    with _publisher_lock:
        if _publisher is None or _publisher.bus != bus:
            _publisher = LifecyclePublisher(bus, region)
        return _publisher


def request_ended(item: RequestItem, now: int) -> None:
    """Publish `item`'s lifecycle event if a bus is configured; never raises."""
    events = publisher()
    if events is not None:
        events.request_ended(item, now)
