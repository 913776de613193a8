"""`$connect`: store the connection with the identity the authorizer gave it.

API Gateway holds the client's upgrade request until this answers, and cuts
it off at 29 s; its DynamoDB calls run under the function's budget in the
catalog (the router's: seconds). When the store cannot be reached it answers
503 and the handshake is refused: "If the $connect request fails (e.g., due to
AuthN/AuthZ failure or an integration failure), the connection will not be
made" (https://docs.aws.amazon.com/apigateway/latest/developerguide/
apigateway-websocket-api-route-keys-connect-disconnect.html), and a Lambda
proxy integration's non-2xx `statusCode` is the handshake's status: AWS's own
example returns 400 and `wscat` reports "Unexpected server response: 400"
(https://docs.aws.amazon.com/apigateway/latest/developerguide/
websocket-connect-route-subprotocol.html). A connection nobody could find
again would receive nothing, so refusing it is the honest answer.
"""

from __future__ import annotations

import logging
from typing import Any

from streamer import entry, invocation, metric_names, metrics, runtime, store
from streamer.answers import is_store_failure
from streamer.budgets import runs_under_its_budget
from streamer.config import CONNECTION_TTL_S
from streamer.events import WebSocketEvent
from streamer.logs import log_context
from streamer.models import Connection, owner_key
from streamer.protocol import now_ms

log = logging.getLogger("streamer.connect")
#: The store could not be reached (RFC 9110 section 15.6.4, 503 Service Unavailable).
STORE_UNAVAILABLE = 503


@invocation.entry_point
@runs_under_its_budget(entry.CONNECT)
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
        try:
            store.save_connection(connection)
        except Exception as error:
            if not is_store_failure(error):
                raise
            log.warning(
                "connection refused: store unavailable",
                extra={"fields": {"cause": type(error).__name__, "detail": str(error)}},
            )
            return {"statusCode": STORE_UNAVAILABLE}
        log.info("connected", extra={"fields": {"tenant_id": identity.tenant_id}})
        metrics.count(metric_names.CONNECTIONS_OPENED)
        return {"statusCode": 200}
