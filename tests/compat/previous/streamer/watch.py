"""Watch tokens: short-lived tokens that may only follow one request.

Minted by the router for a request its caller may read (for a second tab, a
notification link, an HTTP client that started the request). A connection
opened with one may `status`, `subscribe` and `unsubscribe` that request and
nothing else: it cannot start requests, cancel, or mint further tokens.

They are HS256 under a server secret and carry their own audience, so they can
never pass as user tokens (the user-token path admits only RS256 and ES256)
and user tokens never pass as watch tokens.
"""

from __future__ import annotations

import time

import jwt

from streamer.events import Identity

AUDIENCE = "streamer:watch"
ALGORITHM = "HS256"


class InvalidWatchToken(Exception):
    """Expired, forged, or not a watch token."""


def mint(
    secret: str,
    identity: Identity,
    owner_user_id: str,
    request_id: str,
    ttl_s: int,
    now: float | None = None,
) -> tuple[str, int]:
    """A token for `request_id` of `owner_user_id` in the caller's tenant; and its expiry (ms)."""
    issued = int(now if now is not None else time.time())
    expires = issued + ttl_s
    claims = {
        "aud": AUDIENCE,
        "sub": owner_user_id,
        "tenant_id": identity.tenant_id,
        "request_id": request_id,
        "minted_by": identity.user_id,
        "iat": issued,
        "exp": expires,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires * 1000


def is_watch_token(header: dict) -> bool:
    return header.get("alg") == ALGORITHM


def verify(secret: str, token: str, leeway_s: int = 30) -> Identity:
    """The identity a watch token grants: the owner's, limited to one request."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            leeway=leeway_s,
            options={"require": ["exp", "sub", "aud"]},
        )
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        raise InvalidWatchToken(type(error).__name__) from None
    user_id, tenant_id = claims.get("sub"), claims.get("tenant_id")
    request_id = claims.get("request_id")
    if not all(isinstance(v, str) and v for v in (user_id, tenant_id, request_id)):
        raise InvalidWatchToken("incomplete claims")
    return Identity(user_id=user_id, tenant_id=tenant_id, watch_request=request_id)
