"""`$disconnect`: forget the connection and its subscriptions.

API Gateway delivers this on a best-effort basis; connection records also
expire by TTL and are removed when a post answers 410. Nobody waits on the
answer, so its DynamoDB calls keep the patient budget the catalog gives it.
"""

from __future__ import annotations

import logging
from typing import Any

from streamer import entry, invocation, metric_names, metrics, runtime, store
from streamer.budgets import runs_under_its_budget
from streamer.events import WebSocketEvent
from streamer.logs import log_context

log = logging.getLogger("streamer.disconnect")


@invocation.entry_point
@runs_under_its_budget(entry.DISCONNECT)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    runtime.current()
    ws = WebSocketEvent(event)
    with log_context(connection_id=ws.connection_id):
        store.forget_connection(ws.connection_id)
        log.info("disconnected")
        metrics.count(metric_names.CONNECTIONS_CLOSED)
    return {"statusCode": 200}
