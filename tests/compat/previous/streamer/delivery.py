"""Posting messages to connections through API Gateway's management API.

A connection that is gone (HTTP 410, `GoneException`) is forgotten: its
record and subscriptions are deleted, and that is not an error of the request.
Throttling (`LimitExceededException`) and 5xx answers are retried by botocore's
standard retry mode: exponential backoff with full jitter, bounded attempts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import Enum
from typing import Any
from urllib.parse import urlparse

from streamer import aws, metric_names, metrics
from streamer.protocol import encode

log = logging.getLogger(__name__)

#: Attempts per message, first try included (botocore "standard" mode).
MAX_ATTEMPTS = 5


class Sent(Enum):
    """What became of one message."""

    DELIVERED = "delivered"
    GONE = "gone"
    FAILED = "failed"


def endpoint_region(endpoint: str) -> str | None:
    """The region of an `execute-api` endpoint, which its requests must be signed for.

    A subscriber may be connected through another region's API; None for a
    custom domain or a local endpoint (the function's own region is used).
    """
    host = urlparse(endpoint).hostname or ""
    parts = host.split(".")
    if len(parts) >= 5 and parts[1] == "execute-api" and parts[3] == "amazonaws":
        return parts[2]
    return None


class Delivery:
    """Sends server messages to connections, one cached client per endpoint.

    Each message goes to the endpoint stored with its connection (`streamer.endpoints`
    decided it at `$connect`), never to one endpoint for all: the connections of
    another region's API are reached through that API.
    """

    def __init__(
        self,
        region: str,
        *,
        on_gone: Callable[[str], None] | None = None,
        client_factory: Callable[[str], Any] | None = None,
    ) -> None:
        self._region = region
        self._on_gone = on_gone
        self._client_factory = client_factory or self._make_client
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _make_client(self, endpoint: str) -> Any:
        from botocore.config import Config

        return aws.create_client(
            "apigatewaymanagementapi",
            region_name=endpoint_region(endpoint) or self._region,
            endpoint_url=endpoint,
            config=Config(
                retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
                connect_timeout=2,
                read_timeout=5,
                max_pool_connections=32,
            ),
        )

    def _client(self, endpoint: str) -> Any:
        with self._lock:
            client = self._clients.get(endpoint)
            if client is None:
                # botocore client creation is not thread-safe; the lock covers it.
                client = self._clients[endpoint] = self._client_factory(endpoint)
            return client

    def send(self, connection_id: str, endpoint: str, message: dict[str, Any]) -> Sent:
        """Post one message.

        Never raises: a gone connection is forgotten, other failures are logged.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        data = encode(message).encode("utf-8")
        try:
            self._client(endpoint).post_to_connection(ConnectionId=connection_id, Data=data)
            return Sent.DELIVERED
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "GoneException":
                log.info("connection gone", extra={"fields": {"target": connection_id}})
                metrics.count(metric_names.GONE_CONNECTIONS)
                if self._on_gone is not None:
                    try:
                        self._on_gone(connection_id)
                    except Exception:
                        log.exception("could not forget a gone connection")
                return Sent.GONE
            log.warning(
                "message not delivered",
                extra={"fields": {"target": connection_id, "error_code": code}},
            )
            metrics.count(metric_names.DELIVERY_FAILURES, reason=failure_reason(code))
            return Sent.FAILED
        except BotoCoreError as error:
            log.warning(
                "message not delivered",
                extra={"fields": {"target": connection_id, "error_code": type(error).__name__}},
            )
            metrics.count(metric_names.DELIVERY_FAILURES, reason="error")
            return Sent.FAILED


def failure_reason(error_code: str) -> str:
    """The `reason` dimension of a failed post: "throttled" (429, `LimitExceededException`)
    or "error" (any other failure; the code itself is in the log line)."""
    return (
        "throttled"
        if error_code in ("LimitExceededException", "TooManyRequestsException")
        else "error"
    )
