"""`$connect` REQUEST authorizer: JWT in, IAM policy out.

Raising `Exception("Unauthorized")` is how a Lambda authorizer makes API
Gateway answer 401; a Deny policy makes it answer 403.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from streamer import runtime
from streamer.auth import InvalidToken, TokenVerifier, policy, tenant_allowed
from streamer.events import AuthorizerEvent
from streamer.logs import log_context

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


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = runtime.current().settings
    request = AuthorizerEvent(event)
    with log_context(connection_id=request.connection_id):
        query, header = request.query_token, request.header_token
        try:
            if query and header and query != header:
                raise InvalidToken("two different tokens")
            identity = _token_verifier().verify(query or header or "")
        except InvalidToken as refusal:
            log.info("connection refused", extra={"fields": {"reason": str(refusal)}})
            raise Exception("Unauthorized") from None
        with log_context(tenant_id=identity.tenant_id, user_id=identity.user_id):
            if not tenant_allowed(identity, settings.allowed_tenants):
                log.info("connection refused", extra={"fields": {"reason": "tenant not allowed"}})
                return policy(identity.user_id, "Deny", request.method_arn, {})
            return policy(identity.user_id, "Allow", request.method_arn, identity.to_context())
