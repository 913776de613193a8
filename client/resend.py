"""When to send a refused message again: the decisions, as pure functions over data.

Two refusals say that nothing was stored and the same message (same `id`) may
go again later:

- `RATE_LIMITED` from the connection's message rate limit (its `details`
  name `limit_per_second`); a few resends in a row pass it. The per-user cap
  on running requests is `RATE_LIMITED` too, but names `max_active_requests`:
  it lasts until a request ends, so it is never resent.
- `UNAVAILABLE`: the action or a dependency (the request store) is out for
  now; resent until the client's deadline for it has passed.

Each resend waits the server's `retry_after_ms` (at least 0.25 s) plus a
jitter that grows exponentially with the resends so far and is capped, as the
reconnect policy's delays are, so clients refused together do not come back
together.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from client.errors import ErrorInfo
from client.reconnect import ReconnectPolicy

# The least wait before a resend, whatever the server says.
MIN_RESEND_WAIT_SECONDS = 0.25


@dataclass(frozen=True)
class ResendLimits:
    """How long the client keeps sending a refused message again."""

    # Resends in a row of a message the connection's rate limit refused.
    rate_limit_retries: int
    # Seconds from the first UNAVAILABLE answer within which resends may go out.
    unavailable_deadline: float
    # Its delays give the jitter: resend n (from 0) adds up to `policy.ceiling(n)`.
    policy: ReconnectPolicy


@dataclass(frozen=True)
class Refusals:
    """How often one code refused a message in a row, and for how long so far."""

    count: int
    seconds: float


def is_resendable(error: ErrorInfo) -> bool:
    """Whether the refusal says the same message may pass if sent again later."""
    if not error.retryable:
        return False
    if error.code == "RATE_LIMITED":
        return "limit_per_second" in error.details
    return error.code == "UNAVAILABLE"


def floor_wait(details: Mapping[str, Any]) -> float:
    """The server's `retry_after_ms` in seconds, and at least 0.25 s."""
    retry_after_ms = details.get("retry_after_ms")
    if not isinstance(retry_after_ms, int | float) or isinstance(retry_after_ms, bool):
        retry_after_ms = 0
    return max(MIN_RESEND_WAIT_SECONDS, retry_after_ms / 1000)


def resend_wait(
    error: ErrorInfo, before: Refusals, limits: ResendLimits, rng: random.Random
) -> float | None:
    """Seconds to wait before sending the refused message again, or None to give up.

    `before` counts the refusals by the same code in a row before this one and
    the seconds since the first of them (0 for this one's first).
    """
    if not is_resendable(error):
        return None
    wait = floor_wait(error.details) + limits.policy.delay(before.count, rng)
    if error.code == "RATE_LIMITED":
        return wait if before.count < limits.rate_limit_retries else None
    return wait if before.seconds + wait <= limits.unavailable_deadline else None


def given_up(error: ErrorInfo, refusals: Refusals) -> ErrorInfo:
    """The error the caller gets once the resends are over: the server's, saying so."""
    if refusals.count <= 1:
        return error
    note = f"gave up after {refusals.count} refusals over {refusals.seconds:.1f} s"
    return replace(error, message=f"{error.message} ({note})" if error.message else note)
