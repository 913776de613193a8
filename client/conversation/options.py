"""The conversation's options, in milliseconds, with the defaults both clients share.

client/conversation/README.md documents each; the JS client takes the same
names in camelCase.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from client.reconnect import ReconnectPolicy

# API Gateway closes a WebSocket connection after 2 hours and after 10 minutes
# without messages ("WebSocket API quotas": "Connection duration for WebSocket
# API: 2 hours"; "Idle Connection Timeout: 10 minutes"; docs.aws.amazon.com/
# apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html).
GATEWAY_MAX_CONNECTION_MS = 2 * 60 * 60 * 1000
GATEWAY_IDLE_TIMEOUT_MS = 10 * 60 * 1000
# The reconnect policy's defaults (seconds) are the conversation's (milliseconds).
_POLICY = ReconnectPolicy()


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass(frozen=True)
class Options:
    """How the conversation behaves; times in milliseconds, None turns a timer off."""

    # A fixed token; None: ask the token provider before every open.
    token: str | None = None
    # A sent message unanswered this long ends its call with NO_ANSWER. API
    # Gateway ends a route's integration after 29 s and answers itself, so a
    # message unanswered for longer never will be.
    answer_timeout_ms: int | None = 35_000
    rate_limit_retries: int = 3
    unavailable_deadline_ms: int = 30_000
    initial_delay_ms: int = _ms(_POLICY.initial_delay)
    max_delay_ms: int = _ms(_POLICY.max_delay)
    multiplier: float = _POLICY.multiplier
    suspend_after_ms: int = _ms(_POLICY.suspend_after)
    suspended_retry_ms: int = _ms(_POLICY.suspended_retry)
    # None: reconnect for good.
    max_reconnect_attempts: int | None = _POLICY.max_attempts
    max_token_failures: int = 3
    # Half the gateway's idle timeout: a ping is a data message, which API
    # Gateway counts as activity (WebSocket ping frames are not known to be).
    ping_interval_ms: int | None = GATEWAY_IDLE_TIMEOUT_MS // 2
    pong_timeout_ms: int = 15_000
    max_connection_ms: int = GATEWAY_MAX_CONNECTION_MS
    rotate_before_ms: int = 5 * 60 * 1000
    conflict_retries: int = 8

    def __post_init__(self) -> None:
        for name in ("answer_timeout_ms", "ping_interval_ms"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None")
        for name in (
            "rate_limit_retries",
            "unavailable_deadline_ms",
            "initial_delay_ms",
            "max_delay_ms",
            "suspend_after_ms",
            "suspended_retry_ms",
            "rotate_before_ms",
            "conflict_retries",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_reconnect_attempts is not None and self.max_reconnect_attempts < 0:
            raise ValueError("max_reconnect_attempts must not be negative")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if self.max_token_failures < 1 or self.pong_timeout_ms <= 0:
            raise ValueError("max_token_failures and pong_timeout_ms must be positive")
        if self.max_connection_ms <= 0:
            raise ValueError("max_connection_ms must be positive")

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> Options:
        """Options from a vector's `options` (keys it does not know are not options)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
