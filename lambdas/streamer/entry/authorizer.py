"""`$connect` REQUEST authorizer: JWT in, IAM policy out.

Raising `Exception("Unauthorized")` is how a Lambda authorizer makes API
Gateway answer 401; a Deny policy makes it answer 403.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import jwt

from streamer import runtime, watch
from streamer.auth import MAX_TOKEN_BYTES, InvalidToken, TokenVerifier, policy, tenant_allowed
from streamer.config import Settings
from streamer.events import AuthorizerEvent, Identity
from streamer.logs import log_context
from streamer.watch import InvalidWatchToken

log = logging.getLogger("streamer.authorizer")
_verifier: TokenVerifier | None = None
_lock = threading.Lock()


def _token_verifier() -> TokenVerifier:
    global _verifier
    with _lock:
        if _verifier is None:
            _verifier = TokenVerifier(runtime.current().settings)
        return _verifier


def reset() -> None:
    """Forget the cached verifier (configuration changed; tests)."""
    global _verifier
    with _lock:
        _verifier = None


def identity_of_token(token: str, settings: Settings) -> Identity:
    """A user token's identity, or a watch token's (limited to one request)."""
    if settings.watch_token_secret and token and len(token) <= MAX_TOKEN_BYTES:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        if watch.is_watch_token(header):
            return watch.verify(settings.watch_token_secret, token, settings.jwt_leeway_s)
    return _token_verifier().verify(token)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = runtime.current().settings
    request = AuthorizerEvent(event)
    with log_context(connection_id=request.connection_id):
        query, header = request.query_token, request.header_token
        try:
            if query and header and query != header:
                raise InvalidToken("two different tokens")
            identity = identity_of_token(query or header or "", settings)
        except (InvalidToken, InvalidWatchToken) as refusal:
            log.info("connection refused", extra={"fields": {"reason": str(refusal)}})
            raise Exception("Unauthorized") from None
        with log_context(tenant_id=identity.tenant_id, user_id=identity.user_id):
            if not tenant_allowed(identity, settings.allowed_tenants):
                log.info("connection refused", extra={"fields": {"reason": "tenant not allowed"}})
                return policy(identity.user_id, "Deny", request.method_arn, {})
            return policy(identity.user_id, "Allow", request.method_arn, identity.to_context())
