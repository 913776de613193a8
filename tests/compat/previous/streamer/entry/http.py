"""The HTTP API (payload format 2.0): start a request, read it, long-poll it.

`POST /requests` runs the same router as a WebSocket message, for a caller
without a connection. `GET /requests/{id}` reads one request; with `?wait=N`
it long-polls: it answers as soon as the request's status, progress or seq
differ from the first read, or after N seconds with the unchanged snapshot.

Both routes sit behind the same Lambda authorizer as the WebSocket `$connect`
(simple responses), so the caller's identity is the context it returned, which
API Gateway passes as `requestContext.authorizer.lambda` (payload format 2.0;
the `lambda` member of aws-lambda-go's `APIGatewayV2HTTPRequestContext
AuthorizerDescription`). A user token or a watch token (limited to one request)
is accepted there; this function verifies no token itself.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from streamer import aws, invocation, metric_names, metrics, store, watch
from streamer.answers import failure_answer
from streamer.config import Settings
from streamer.entry.router import current_router, outcome_of
from streamer.errors import ErrorCode, StreamerError
from streamer.events import HttpEvent, Identity
from streamer.logs import Timer, log_context
from streamer.models import RequestItem
from streamer.protocol import encode
from streamer.router import Caller, Router

log = logging.getLogger("streamer.http")
#: The `route` dimension of the messages `POST /requests` answers.
ROUTE = "POST /requests"

#: Longest `?wait=`: API Gateway ends an HTTP API integration at 29 s.
MAX_WAIT_S = 25
#: How often a long poll re-reads the request (consistent reads).
POLL_INTERVAL_S = 0.25
#: Time kept back from the invocation's remaining time to answer.
ANSWER_MARGIN_MS = 1500

HTTP_STATUS = {
    ErrorCode.INVALID_MESSAGE: 400,
    ErrorCode.VALIDATION_ERROR: 400,
    ErrorCode.INVALID_ACTION: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.CANCELLED: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.PROCESSING_FAILED: 500,
    ErrorCode.INTERNAL_ERROR: 500,
    # A store outage: "the server is currently unable to handle the request due to a
    # temporary overload or scheduled maintenance, which will likely be alleviated
    # after some delay" (RFC 9110 section 15.6.4, 503 Service Unavailable).
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.TIMEOUT: 504,
}


def http_response(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {
            "Content-Type": "application/json",
            "Cache-Control": "no-store",
            **(headers or {}),
        },
        "body": encode(body),
    }


def retry_after(error: Mapping[str, Any]) -> dict[str, str]:
    """`Retry-After` for a protocol error with `details.retry_after_ms`, else nothing.

    Its value is whole seconds (RFC 9110 section 10.2.3: `delay-seconds`, a
    non-negative integer), rounded up so a client that waits it waits enough.
    UNAVAILABLE (503) and RATE_LIMITED (429, RFC 6585 section 4) carry it.
    """
    delay_ms = (error.get("details") or {}).get("retry_after_ms")
    if not isinstance(delay_ms, int | float) or isinstance(delay_ms, bool) or delay_ms < 0:
        return {}
    return {"Retry-After": str(math.ceil(delay_ms / 1000))}


def error_answer(body: dict[str, Any], error: Mapping[str, Any]) -> dict[str, Any]:
    """`body`, which holds the protocol `error` object `error`, with the status of its code."""
    try:
        status = HTTP_STATUS.get(ErrorCode(error.get("code")), 500)
    except ValueError:
        status = 500
    return http_response(status, body, retry_after(error))


def error_response(error: StreamerError) -> dict[str, Any]:
    """A protocol `error` object, `{"error": {...}}`, with its HTTP status."""
    body = error.to_dict()
    return error_answer({"error": body}, body)


def _identity(request: HttpEvent) -> Identity:
    """Who calls: the context the Lambda authorizer returned for the route."""
    authorizer = request.request_context.get("authorizer") or {}
    identity = Identity.from_context(authorizer.get("lambda"))
    if identity is None:
        raise StreamerError(ErrorCode.UNAUTHORIZED, "missing or invalid token")
    return identity


def _remaining_ms(context: Any) -> int:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return int(remaining()) if callable(remaining) else 29_000


def start_request(router: Router, request: HttpEvent, context: Any) -> dict[str, Any]:
    """`POST /requests`: 200 with a sync `response`, 202 with an accepted async request."""
    settings = router.settings
    identity = _identity(request)
    caller = Caller(connection_id=None, identity=identity, endpoint=None)
    with log_context(tenant_id=identity.tenant_id, user_id=identity.user_id):
        answer = router.handle(request.body, caller, _remaining_ms(context))
    metrics.count(metric_names.MESSAGES, route=ROUTE, outcome=outcome_of(answer))
    kind = answer.get("type")
    if kind == "error":
        return error_answer(answer, answer["error"])
    if kind == "acknowledgment":
        return http_response(202, accepted(settings, identity, answer))
    if kind == "response" and not answer.get("success"):
        return error_answer(answer, answer.get("error") or {"code": ErrorCode.INTERNAL_ERROR})
    return http_response(200, answer)


def accepted(
    settings: Settings, identity: Identity, acknowledgment: dict[str, Any]
) -> dict[str, Any]:
    """The 202 body: the acknowledgment, where to follow it, and a watch token for it."""
    request_id = acknowledgment["request_id"]
    body: dict[str, Any] = {
        "request_id": request_id,
        "status": acknowledgment["status"],
        "estimated_duration_ms": acknowledgment.get("estimated_duration_ms"),
        "websocket_url": settings.websocket_url,
    }
    if settings.watch_token_secret:
        token, expires_at = watch.mint(
            settings.watch_token_secret,
            identity,
            identity.user_id,
            request_id,
            settings.watch_token_ttl_s,
        )
        body.update(watch_token=token, watch_token_expires_at=expires_at)
    return body


def wait_seconds(query: Mapping[str, str]) -> float:
    """`?wait=N`: 0 to `MAX_WAIT_S` seconds; anything else is a VALIDATION_ERROR."""
    raw = query.get("wait")
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_WAIT_S:
        raise StreamerError(
            ErrorCode.VALIDATION_ERROR,
            f"wait must be a number of seconds from 0 to {MAX_WAIT_S}",
            details={"fields": {"wait": f"0 to {MAX_WAIT_S}"}},
        )
    return value


def _state(item: RequestItem) -> tuple[str, float, int]:
    return (item.status, float(item.progress), int(item.seq))


def long_poll(
    first: RequestItem,
    wait_s: float,
    read: Callable[[], RequestItem | None],
    *,
    interval_s: float = POLL_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RequestItem:
    """The request once its state differs from `first`, or `first`'s latest read after `wait_s`."""
    deadline = clock() + wait_s
    latest = first
    while not latest.is_terminal:
        left = deadline - clock()
        if left <= 0:
            break
        sleep(min(interval_s, left))
        latest = read() or latest
        if _state(latest) != _state(first):
            break
    return latest


def read_request(router: Router, request: HttpEvent, context: Any) -> dict[str, Any]:
    """`GET /requests/{id}[?wait=N]`: the snapshot, with its `seq`."""
    request_id = request.request_id_parameter or ""
    identity = _identity(request)
    wait_s = wait_seconds(request.query)
    caller = Caller(connection_id=None, identity=identity, endpoint=None)
    with log_context(tenant_id=identity.tenant_id, user_id=identity.user_id):
        item = router.readable_request(caller, request_id)
        wait_s = min(wait_s, max(0, _remaining_ms(context) - ANSWER_MARGIN_MS) / 1000)
        if wait_s > 0:
            # The re-reads answer inside API Gateway's 29 s like the first read: under
            # the router's call budget, so an outage is UNAVAILABLE within seconds.
            with aws.dynamodb_budget(router.store_budget):
                item = long_poll(item, wait_s, lambda: store.get_request(item.owner, request_id))
    return http_response(200, {**item.snapshot(), "seq": int(item.seq)})


def route_of(request: HttpEvent) -> Callable[[Router, HttpEvent, Any], dict[str, Any]] | None:
    if request.method == "POST" and request.path.rstrip("/") == "/requests":
        return start_request
    if request.method == "GET" and request.request_id_parameter is not None:
        return read_request
    return None


@invocation.entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    router = current_router()
    request = HttpEvent(event)
    timer = Timer()
    route = route_of(request)
    try:
        if route is None:
            raise StreamerError(ErrorCode.NOT_FOUND, "no such route")
        answer = route(router, request, context)
    except StreamerError as error:
        answer = error_response(error)
    except Exception as failure:
        # A store outage is UNAVAILABLE; anything else an INTERNAL_ERROR, logged.
        error = failure_answer(failure, None)["error"]
        answer = error_answer({"error": error}, error)
    log.info(
        "http request answered",
        extra={
            "fields": {
                "method": request.method,
                "status": answer["statusCode"],
                "duration_ms": timer.elapsed_ms,
            }
        },
    )
    return answer
