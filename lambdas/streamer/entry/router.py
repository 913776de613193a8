"""`$default`: every client message. The answer is the route response body.

Nothing escapes to API Gateway: an exception there becomes its bare
`{"message": "Internal server error"}`, with no `type` and no `request_id`,
and the client would wait for its answer forever. The router's DynamoDB
calls run under its call budget (the catalog's, `streamer.aws.ROUTER`,
changed by the function's environment), so a store outage is answered UNAVAILABLE within
seconds, inside API Gateway's 29 s.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from typing import Any

from streamer import entry, invocation, logs, metric_names, metrics, runtime, tracing
from streamer.answers import failure_answer
from streamer.budgets import budget_of
from streamer.errors import ErrorCode, StreamerError
from streamer.events import Identity, WebSocketEvent
from streamer.logs import Timer, log_context
from streamer.protocol import client_id_of, encode
from streamer.router import Caller, Router

log = logging.getLogger("streamer.router")
#: The `route` dimension of the messages this function answers (API Gateway's route key).
ROUTE = "$default"
_router: Router | None = None
_lock = threading.Lock()


def current_router() -> Router:
    global _router
    rt = runtime.current()
    router = _router
    if router is not None and router.settings is rt.settings:
        return router
    with _lock:
        if _router is None or _router.settings is not rt.settings:
            _router = Router(
                rt.settings,
                rt.app,
                sync_pool=concurrent.futures.ThreadPoolExecutor(
                    max_workers=4, thread_name_prefix="sync-handler"
                ),
                delivery=lambda: rt.delivery,
                store_budget=budget_of(entry.ROUTER),
            )
        return _router


def _remaining_ms(context: Any) -> int:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return int(remaining()) if callable(remaining) else 29_000


def _answer(
    ws: WebSocketEvent, connection_id: str, identity: Identity | None, context: Any
) -> dict[str, Any]:
    router = current_router()
    if identity is None:
        raise StreamerError(ErrorCode.UNAUTHORIZED, "no identity on this connection")
    caller = Caller(
        connection_id=connection_id,
        identity=identity,
        endpoint=router.connection_endpoint(ws.request_context),
    )
    with tracing.subsegment("streamer.router"):
        answer = router.handle(ws.body, caller, _remaining_ms(context))
        tracing.annotate_request(logs.bound_fields())
        return answer


@invocation.entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ws = WebSocketEvent(event)
    timer = Timer()
    connection_id, identity = ws.connection_id, ws.identity
    # The answer's line carries the tenant too: the per-tenant Contributor Insights rules
    # count requests from it (components/insights.py).
    with log_context(
        connection_id=connection_id,
        tenant_id=identity.tenant_id if identity else None,
        user_id=identity.user_id if identity else None,
    ):
        try:
            answer = _answer(ws, connection_id, identity, context)
            body = encode(answer)
        except Exception as error:
            answer = failure_answer(error, _request_id_of(ws))
            body = encode(answer)
        logs.info(
            log,
            "message answered",
            {"answer": answer.get("type"), "duration_ms": timer.elapsed_ms},
        )
        metrics.count(metric_names.MESSAGES, route=ROUTE, outcome=outcome_of(answer))
    return {"statusCode": 200, "body": body}


def outcome_of(answer: dict[str, Any]) -> str:
    """The `outcome` dimension of an answer: its error code if it failed, else its type."""
    error = answer.get("error") if answer.get("type") in ("error", "response") else None
    if error is None:
        return str(answer.get("type"))
    try:
        return ErrorCode(error.get("code")).value
    except (AttributeError, ValueError):
        # An app's own code is not a bounded value: counted as what the protocol calls it.
        return ErrorCode.INTERNAL_ERROR.value


def _request_id_of(ws: WebSocketEvent) -> str | None:
    """The message's `id`, if its body can be read at all (it may be what failed)."""
    try:
        return client_id_of(ws.body)
    except ValueError:
        return None
