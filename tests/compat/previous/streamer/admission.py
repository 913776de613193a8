"""Who may send what: the caller of a frame, its rate limit, and the scope of its identity.

Admission comes before anything else the router does with a frame: every
frame counts against the connection's rate limit, valid or not; a watch
token reaches only its one request; another user's request needs a
tenant-wide permission and is otherwise answered like an unknown one.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamer.config import Settings
from streamer.errors import ErrorCode, StreamerError
from streamer.events import Identity
from streamer.models import owner_key
from streamer.protocol import CANCEL, PING, STATUS, SUBSCRIBE, UNSUBSCRIBE, ClientMessage
from streamer.ratelimit import ConnectionRateLimiter, TokenBucket

#: Permissions (token claim `permissions`) that reach other users' requests of the tenant.
READ_TENANT = "requests:read:tenant"
CANCEL_TENANT = "requests:cancel:tenant"
#: What a connection opened with a watch token may do, on its one request.
WATCH_ACTIONS = frozenset({PING, STATUS, SUBSCRIBE, UNSUBSCRIBE})


@dataclass(frozen=True)
class Caller:
    """The connection a frame came from and who is behind it (from the authorizer).

    An HTTP caller has no connection (`connection_id` and `endpoint` None): its
    requests are followed by polling or by subscribers, and the per-connection
    rate limit is the HTTP API stage's throttling instead.
    """

    connection_id: str | None
    identity: Identity
    endpoint: str | None

    @property
    def owner(self) -> str:
        return owner_key(self.identity.tenant_id, self.identity.user_id)


def not_found(request_id: str) -> StreamerError:
    """The same answer for unknown ids and ids of other tenants or users: no existence leak."""
    return StreamerError(ErrorCode.NOT_FOUND, "no such request", details={"request_id": request_id})


def rate_limiter(settings: Settings) -> ConnectionRateLimiter | None:
    """The per-connection limiter the settings ask for; None when the rate is 0 (off)."""
    if settings.rate_limit_per_s <= 0:
        return None
    burst = settings.rate_limit_burst or settings.rate_limit_per_s
    return ConnectionRateLimiter(TokenBucket(settings.rate_limit_per_s, burst))


def admit(limiter: ConnectionRateLimiter | None, caller: Caller, now: int) -> None:
    """The per-connection rate limit at `now` (ms): RATE_LIMITED, with when to retry, past it."""
    if caller.connection_id is None or limiter is None:
        return
    verdict = limiter.admit(caller.connection_id, now)
    if verdict.admitted:
        return
    bucket = limiter.bucket
    raise StreamerError(
        ErrorCode.RATE_LIMITED,
        f"more than {bucket.burst} messages at once or {bucket.rate_per_s:g} a second "
        "on this connection",
        details={
            "limit_per_second": bucket.rate_per_s,
            "burst": bucket.burst,
            "retry_after_ms": verdict.retry_after_ms,
        },
        retryable=True,
    )


def check_watch_scope(message: ClientMessage, caller: Caller) -> None:
    """A watch token may only follow its own request: FORBIDDEN or NOT_FOUND otherwise."""
    if message.action not in WATCH_ACTIONS or message.topic is not None:
        raise StreamerError(
            ErrorCode.FORBIDDEN,
            "a watch token may only follow its request (status, subscribe, unsubscribe)",
        )
    if message.request_id is not None and (
        message.request_id != caller.identity.watch_request or message.user_id is not None
    ):
        raise not_found(message.request_id)


def owner_of_target(message: ClientMessage, caller: Caller) -> str:
    """Whose request a system action names: the caller's, or with a tenant-wide
    permission another user's of the same tenant. Without the permission the
    answer is NOT_FOUND, as for an unknown id."""
    identity = caller.identity
    if message.user_id is None or message.user_id == identity.user_id:
        return caller.owner
    needed = CANCEL_TENANT if message.action == CANCEL else READ_TENANT
    if needed not in identity.permissions:
        if message.action == CANCEL and READ_TENANT in identity.permissions:
            raise StreamerError(
                ErrorCode.FORBIDDEN, f"cancelling another user's request needs {needed}"
            )
        raise not_found(message.request_id or "")
    return owner_key(identity.tenant_id, message.user_id)
