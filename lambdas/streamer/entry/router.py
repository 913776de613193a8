"""`$default`: every client message. The answer is the route response body."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from typing import Any

from streamer import runtime
from streamer.errors import ErrorCode, StreamerError
from streamer.events import WebSocketEvent
from streamer.execution import internal_error
from streamer.logs import Timer, log_context
from streamer.protocol import encode, error_message
from streamer.router import Caller, Router

log = logging.getLogger("streamer.router")
_router: Router | None = None
_lock = threading.Lock()


def current_router() -> Router:
    global _router
    with _lock:
        rt = runtime.current()
        if _router is None or _router.settings is not rt.settings:
            _router = Router(
                rt.settings,
                rt.app,
                sync_pool=concurrent.futures.ThreadPoolExecutor(
                    max_workers=4, thread_name_prefix="sync-handler"
                ),
                delivery=lambda: rt.delivery,
            )
        return _router


def _remaining_ms(context: Any) -> int:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return int(remaining()) if callable(remaining) else 29_000


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    router = current_router()
    ws = WebSocketEvent(event)
    timer = Timer()
    with log_context(connection_id=ws.connection_id):
        identity = ws.identity
        try:
            if identity is None:
                raise StreamerError(ErrorCode.UNAUTHORIZED, "no identity on this connection")
            caller = Caller(
                connection_id=ws.connection_id,
                identity=identity,
                endpoint=ws.management_endpoint(
                    router.settings.region, router.settings.management_endpoint
                ),
            )
            with log_context(tenant_id=identity.tenant_id, user_id=identity.user_id):
                answer = router.handle(ws.body, caller, _remaining_ms(context))
        except StreamerError as error:
            answer = error_message(error)
        except Exception:
            error = internal_error()
            log.exception(
                "router failed",
                extra={"fields": {"correlation_id": error.details["correlation_id"]}},
            )
            answer = error_message(error)
        log.info(
            "message answered",
            extra={"fields": {"answer": answer.get("type"), "duration_ms": timer.elapsed_ms}},
        )
    return {"statusCode": 200, "body": encode(answer)}
