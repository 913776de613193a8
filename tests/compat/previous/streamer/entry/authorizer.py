"""One REQUEST authorizer for both APIs: the WebSocket `$connect` and the HTTP API.

The same token checks answer in each API's own format:

- WebSocket `$connect` (an event with `methodArn`): an IAM policy. A refused token
  raises `Exception("Unauthorized")`, the only way a Lambda authorizer makes API
  Gateway answer 401 (a Deny policy answers 403, kept for a tenant that is not
  allowed); docs/protocol.md section 1 promises 401 for a refused handshake.
- HTTP API, payload format 2.0 with simple responses (`version` "2.0", `type`
  "REQUEST", `routeArn`, `identitySource`, `headers`, ...): `{"isAuthorized": bool,
  "context": {...}}` and never a raise (docs.aws.amazon.com/apigateway/latest/
  developerguide/http-api-lambda-authorizer.html). The token comes from the
  `Authorization` header, the authorizer's identity source.

A refusal is a normal answer, logged at INFO. Anything else that goes wrong is a
crash: it is logged once as `CRASH_MESSAGE` (ERROR, with a correlation id) and
raised, so API Gateway answers 500. The crash alarm counts that line, not Lambda's
`Errors` metric, which also counts every WebSocket refusal (docs/security.md).
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import jwt

from streamer import entry, invocation, metric_names, metrics, runtime, watch
from streamer.auth import MAX_TOKEN_BYTES, InvalidToken, TokenVerifier, policy, tenant_allowed
from streamer.budgets import runs_under_its_budget
from streamer.config import Settings
from streamer.events import AuthorizerEvent, Identity, bearer_token
from streamer.logs import log_context
from streamer.watch import InvalidWatchToken

log = logging.getLogger("streamer.authorizer")
#: The log line of a crash, and only of a crash: the crash alarm's metric filter matches it.
CRASH_MESSAGE = "authorizer crashed"
#: What a WebSocket refusal raises: API Gateway answers the handshake 401.
UNAUTHORIZED = "Unauthorized"
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


def is_http_api_event(event: dict[str, Any]) -> bool:
    """An HTTP API authorizer event, payload format 2.0 (a WebSocket one has `methodArn`)."""
    return event.get("version") == "2.0" and event.get("type") == "REQUEST" and "routeArn" in event


class _Refused(Exception):
    """The caller is refused: a bad token (`status` 401) or a tenant not allowed (403)."""

    def __init__(self, reason: str, status: int, identity: Identity | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.identity = identity


def _decide(token: str, settings: Settings) -> Identity:
    """The caller's identity, or `_Refused`. Shared by both APIs."""
    try:
        identity = identity_of_token(token, settings)
    except (InvalidToken, InvalidWatchToken) as refusal:
        raise _Refused(str(refusal), 401) from None
    if not tenant_allowed(identity, settings.allowed_tenants):
        raise _Refused("tenant not allowed", 403, identity)
    return identity


def _websocket_answer(event: dict[str, Any], settings: Settings) -> dict[str, Any]:
    request = AuthorizerEvent(event)
    query, header = request.query_token, request.header_token
    try:
        if query and header and query != header:
            raise _Refused("two different tokens", 401)
        identity = _decide(query or header or "", settings)
    except _Refused as refused:
        log.info("connection refused", extra={"fields": {"reason": refused.reason}})
        metrics.count(
            metric_names.CONNECTIONS_REFUSED,
            reason="unauthorized" if refused.status == 401 else "forbidden",
        )
        if refused.identity is None:
            raise Exception(UNAUTHORIZED) from None
        return policy(refused.identity.user_id, "Deny", request.method_arn, {})
    return policy(identity.user_id, "Allow", request.method_arn, identity.to_context())


def _http_answer(event: dict[str, Any], settings: Settings) -> dict[str, Any]:
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    try:
        identity = _decide(bearer_token(headers) or "", settings)
    except _Refused as refused:
        log.info("request refused", extra={"fields": {"reason": refused.reason}})
        return {"isAuthorized": False, "context": {}}
    return {"isAuthorized": True, "context": identity.to_context()}


@invocation.entry_point
@runs_under_its_budget(entry.AUTHORIZER)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    http = is_http_api_event(event)
    connection_id = None if http else AuthorizerEvent(event).connection_id
    with log_context(connection_id=connection_id, api="http" if http else "websocket"):
        try:
            settings = runtime.current().settings
            if http:
                return _http_answer(event, settings)
            return _websocket_answer(event, settings)
        except Exception as error:
            if not http and type(error) is Exception and str(error) == UNAUTHORIZED:
                raise
            correlation_id = uuid.uuid4().hex
            log.exception(CRASH_MESSAGE, extra={"fields": {"correlation_id": correlation_id}})
            raise Exception(f"authorizer failed ({correlation_id})") from None
