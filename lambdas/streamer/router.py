"""The `$default` route: admit a frame, parse it, answer it as a system or application action.

Every answer is returned to the caller as the route response; nothing here
posts through the management API except `complete` messages of a cancel.
Whatever fails, the caller gets a protocol `error` that names the `id` it
sent (`streamer.answers`).

The jobs, each in its own module, in the order a frame meets them:
`streamer.admission` (rate limit, scope), `streamer.protocol` (parsing),
`streamer.system_actions`, `streamer.application` (sync or async), and
`streamer.answers` (failures).

Its DynamoDB calls run under `store_budget` (`streamer.aws.ROUTER` unless
told otherwise), whichever API it answers for: API Gateway cuts a WebSocket
or HTTP integration off at 29 s, so a store outage must be answered before.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from streamer import aws, endpoints, metric_names, metrics
from streamer.admission import Caller, admit, check_watch_scope, rate_limiter
from streamer.answers import failure_answer
from streamer.application import ApplicationActions, runs_async
from streamer.config import Settings
from streamer.handlers import App
from streamer.logs import Timer, bind
from streamer.models import RequestItem
from streamer.protocol import ClientMessage, client_id_of, now_ms, parse_client_message

if TYPE_CHECKING:
    from streamer.system_actions import SystemActions

__all__ = ["Caller", "Router", "rate_limiter", "runs_async"]


class Router:
    def __init__(
        self,
        settings: Settings,
        app: App,
        *,
        sync_pool: concurrent.futures.ThreadPoolExecutor,
        delivery: Callable[[], Any],
        store_budget: aws.CallBudget = aws.ROUTER,
    ) -> None:
        self.settings = settings
        self.app = app
        self.store_budget = store_budget
        self._limiter = rate_limiter(settings)
        self._delivery = delivery
        self._system_actions: SystemActions | None = None
        self._application = ApplicationActions(settings, app, sync_pool)
        #: `STREAMER_MANAGEMENT_ENDPOINT` once read (`streamer.endpoints`).
        self._endpoint_overrides: dict[str, str] | None = None

    def connection_endpoint(self, request_context: Mapping[str, Any]) -> str:
        """The `@connections` base URL of the API a WebSocket event came through.

        The overrides are read at the first message that needs them and kept; a
        malformed one fails each message, as when it was read per message."""
        overrides = self._endpoint_overrides
        if overrides is None:
            overrides = endpoints.parse_overrides(self.settings.management_endpoint)
            self._endpoint_overrides = overrides
        return endpoints.connection_endpoint(request_context, self.settings.region, overrides)

    def handle(self, body: str | None, caller: Caller, remaining_ms: int) -> dict[str, Any]:
        """Answer one frame with the server message to return to the caller; never raises."""
        message: ClientMessage | None = None
        timer = Timer()
        try:
            with aws.dynamodb_budget(self.store_budget):
                admit(self._limiter, caller, now_ms())
                message = parse_client_message(body)
                bind(action=message.action, client_id=message.id)
                if caller.identity.watch_request is not None:
                    check_watch_scope(message, caller)
                if message.is_system:
                    return self._system().answer(message, caller)
                answer = self._application.answer(message, caller, remaining_ms)
                if answer.get("type") == "acknowledgment":
                    metrics.duration(
                        metric_names.ACK_DURATION, timer.elapsed_ms, action=message.action
                    )
                return answer
        except Exception as error:
            request_id = message.id if message is not None else client_id_of(body)
            return failure_answer(error, request_id)

    def _system(self) -> SystemActions:
        """The system actions, made (and their module imported) at the first system message.

        Most frames are application actions; `streamer.system_actions` brings the
        audience and lifecycle modules, which a cold start answering one of those
        need not import (docs/benchmarks.md, section 4).
        """
        if self._system_actions is None:
            from streamer.system_actions import SystemActions

            self._system_actions = SystemActions(self.settings, self._delivery)
        return self._system_actions

    def readable_request(self, caller: Caller, request_id: str) -> RequestItem:
        """The caller's own request, or the one its watch token names; NOT_FOUND otherwise."""
        with aws.dynamodb_budget(self.store_budget):
            return self._system().readable_request(caller, request_id)
