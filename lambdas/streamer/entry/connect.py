"""`$connect`: store the connection with the identity the authorizer gave it."""

from __future__ import annotations

import logging
from typing import Any

from streamer import invocation, metric_names, metrics, runtime, store
from streamer.config import CONNECTION_TTL_S
from streamer.events import WebSocketEvent
from streamer.logs import log_context
from streamer.models import Connection, owner_key
from streamer.protocol import now_ms

log = logging.getLogger("streamer.connect")


@invocation.entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = runtime.current().settings
    ws = WebSocketEvent(event)
    identity = ws.identity
    with log_context(connection_id=ws.connection_id):
        if identity is None:
            # Only reachable if the route lost its authorizer: refuse, store nothing.
            log.error("connect without authorizer context")
            metrics.count(metric_names.CONNECTIONS_REFUSED, reason="unauthorized")
            return {"statusCode": 401}
        now = now_ms()
        connection = Connection(
            ws.connection_id,
            user_key=owner_key(identity.tenant_id, identity.user_id),
            user_id=identity.user_id,
            tenant_id=identity.tenant_id,
            permissions=set(identity.permissions) or None,
            endpoint=ws.management_endpoint(settings.region, settings.management_endpoint),
            connected_at=ws.connected_at or now,
            last_seen=now,
            ttl=now // 1000 + CONNECTION_TTL_S,
        )
        store.save_connection(connection)
        log.info("connected", extra={"fields": {"tenant_id": identity.tenant_id}})
        metrics.count(metric_names.CONNECTIONS_OPENED)
        return {"statusCode": 200}
