"""When the conversation does things: backoff, suspended retries, rotation, token expiry.

Pure functions over data: every wait comes from the options, the clock and
one draw of `random()` in [0, 1).
"""

from __future__ import annotations

import base64
import binascii
import json

from client.conversation.options import Options


def backoff_ms(options: Options, attempt: int, draw: float) -> int:
    """The jittered wait before reconnect attempt `attempt` (from 0): "full jitter".

    Uniform in [0, min(max_delay_ms, initial_delay_ms * multiplier ** attempt)],
    so clients dropped together by one outage do not come back in lockstep.
    """
    return int(draw * ceiling_ms(options, attempt))


def ceiling_ms(options: Options, attempt: int) -> float:
    """The longest wait before attempt `attempt` (from 0)."""
    try:
        grown = options.initial_delay_ms * options.multiplier**attempt
    except OverflowError:
        return float(options.max_delay_ms)
    return min(float(options.max_delay_ms), grown)


def suspended_wait_ms(options: Options, draw: float) -> int:
    """The wait between attempts once suspended: half to all of `suspended_retry_ms`."""
    return int(options.suspended_retry_ms * (0.5 + draw / 2))


def token_expiry_ms(token: str) -> int | None:
    """When a JWT expires (its `exp`, in ms), read without verifying; None if it says nothing.

    Only the server verifies tokens; the client reads `exp` to rotate its
    connection before the token it connected with runs out.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    segment = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(segment))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    return int(exp * 1000)


def rotation_at_ms(options: Options, opened_at: int, token: str | None) -> int:
    """When to replace a connection opened at `opened_at` with `token`.

    Before API Gateway's maximum connection duration and before the token's
    `exp` (a token already expired at the open is ignored: the server would
    have refused it), by `rotate_before_ms` or half the connection's life,
    whichever is shorter.
    """
    deadline = opened_at + options.max_connection_ms
    expiry = token_expiry_ms(token) if token is not None else None
    if expiry is not None and opened_at < expiry < deadline:
        deadline = expiry
    return deadline - min(options.rotate_before_ms, (deadline - opened_at) // 2)
