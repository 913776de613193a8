"""Every Lambda function Streamer runs, declared once.

For each function: its entry point, what invokes it, its default memory and timeout, the
environment variables it is given, and what it needs to do its work (table calls, posting
to clients, lifecycle events). The Pulumi components build the functions, their triggers
and their policies from this, and the local stack runs and wires the same functions.
Plain data with no AWS imports, so the components can read it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from streamer import config, entry
from streamer.aws import PATIENT, ROUTER, CallBudget
from streamer.schema import (
    CONNECTIONS,
    CONNECTIONS_BY_USER,
    REQUESTS,
    REQUESTS_BY_ACTIVE_OWNER,
    REQUESTS_BY_DUE,
    SUBSCRIPTIONS,
    SUBSCRIPTIONS_BY_CONNECTION,
)

#: API Gateway ends every integration call (so every sync answer) after 29 seconds.
API_INTEGRATION_LIMIT_S = 29


class Trigger(enum.Enum):
    """What invokes a function."""

    #: The WebSocket API's `$connect` REQUEST authorizer.
    WEBSOCKET_AUTHORIZER = "websocket-authorizer"
    WEBSOCKET_CONNECT = "websocket:$connect"
    WEBSOCKET_DISCONNECT = "websocket:$disconnect"
    WEBSOCKET_DEFAULT = "websocket:$default"
    #: The event source mapping on the requests table's stream, filtered as
    #: `streamer.record_filter.processor_records` says.
    REQUESTS_STREAM = "requests-stream"
    #: An EventBridge schedule, once a minute on AWS.
    SCHEDULE = "schedule"
    #: The HTTP API's routes.
    HTTP_API = "http-api"
    #: The notifications SNS topic and the event bus's notification rule.
    NOTIFICATIONS = "notifications"


@dataclass(frozen=True)
class StreamMapping:
    """The requests stream's event source mapping, named as on `CreateEventSourceMapping`.

    One definition for both sides: the deployed mapping's defaults
    (`components.settings.ProcessorSettings`, overridable per stack) and the local
    stack's (`local.streams.BatchPolicy`, `local.event_source_mapping.MappingConfig`),
    so that local batches and retries are the ones a deployed stack has.
    """

    batch_size: int = 10
    maximum_batching_window_s: int = 0
    parallelization_factor: int = 10
    maximum_retry_attempts: int = 5
    maximum_record_age_s: int = 3600
    #: A function error splits the failed batch in two before it is retried.
    bisect_batch_on_function_error: bool = True


REQUESTS_STREAM_MAPPING = StreamMapping()


@dataclass(frozen=True)
class TableAccess:
    """DynamoDB actions on one table, or on one of its indexes when `index` is set."""

    table: str
    actions: tuple[str, ...]
    index: str | None = None


@dataclass(frozen=True)
class Function:
    """One function: entry point, triggers, size, environment and what it is allowed."""

    name: str
    handler: str
    triggers: tuple[Trigger, ...]
    memory_mb: int
    timeout_s: int
    #: The variable names (`streamer.config`) it is given; those without a value in a
    #: deployment (an optional setting left out) are not set.
    environment: frozenset[str]
    tables: tuple[TableAccess, ...] = ()
    #: Posts to clients through the WebSocket management API (`@connections`).
    posts_to_connections: bool = False
    #: For a scheduled function: what each run does.
    description: str = ""
    #: How long each of its DynamoDB calls may take (`streamer.aws.CallBudget`), before
    #: its environment's `STREAMER_DYNAMODB_*` change it: `ROUTER` for a function someone
    #: waits on inside API Gateway's 29 s, `PATIENT` for one nobody waits on. Applied by
    #: `streamer.budgets`, to PynamoDB's calls and the store's own botocore clients alike.
    store_budget: CallBudget = PATIENT

    @property
    def puts_lifecycle_events(self) -> bool:
        """Puts lifecycle events (`Request Completed`, ...) on the region's event bus."""
        return config.EVENT_BUS in self.environment


_LOGS = frozenset({config.LOG_LEVEL, config.LOG_DEBUG_SAMPLE_RATE, config.STAGE, config.TRACING})
_TABLES = frozenset({config.CONNECTIONS_TABLE, config.REQUESTS_TABLE, config.SUBSCRIPTIONS_TABLE})
#: What verifies a user's token (and a watch token, when the stack has a secret).
_TOKENS = frozenset(
    {
        config.JWT_ISSUER,
        config.JWT_AUDIENCE,
        config.JWT_JWKS_URL,
        config.JWT_PUBLIC_KEY,
        config.JWT_LEEWAY_S,
        config.ALLOWED_TENANTS,
        config.WATCH_TOKEN_SECRET,
    }
)
#: What runs requests: the app and the request tunables.
_REQUESTS = frozenset(
    {
        config.APP_MODULE,
        config.ASYNC_THRESHOLD_MS,
        config.SYNC_TIMEOUT_MS,
        config.PROGRESS_FLUSH_MS,
        config.REQUEST_RETENTION_S,
        config.MAX_ATTEMPTS,
        config.LEASE_MARGIN_S,
        config.PROCESSOR_CONCURRENCY,
        config.DUE_SHARDS,
        config.CIRCUIT_WINDOW_S,
        config.CIRCUIT_FAILURE_RATIO,
        config.CIRCUIT_MINIMUM_CALLS,
        config.CIRCUIT_OPEN_S,
        config.CIRCUIT_COUNT_SHARDS,
    }
)
#: What admits messages from clients: rate limit, per-user cap, watch tokens.
_ADMISSION = frozenset(
    {
        config.RATE_LIMIT_PER_S,
        config.RATE_LIMIT_BURST,
        config.MAX_ACTIVE_REQUESTS,
        config.WATCH_TOKEN_TTL_S,
        config.WATCH_TOKEN_SECRET,
    }
)

_GET, _PUT, _UPDATE = "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"
_DELETE, _QUERY, _SCAN = "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:Scan"
_BATCH_GET = "dynamodb:BatchGetItem"

#: The circuit breaker's items in the connections table (`streamer.store.circuits`):
#: read together, counts added, state changed by conditional updates.
_CIRCUITS = TableAccess(CONNECTIONS.logical_name, (_BATCH_GET, _UPDATE))

#: What `store.forget_connection` does: delete the connection, then its subscriptions,
#: found through the by-connection index. The disconnect function calls it, and so does
#: every function that delivers messages, when the management API answers 410 (gone).
_FORGET_CONNECTION = (
    TableAccess(CONNECTIONS.logical_name, (_DELETE,)),
    TableAccess(SUBSCRIPTIONS.logical_name, (_QUERY,), index=SUBSCRIPTIONS_BY_CONNECTION),
    TableAccess(SUBSCRIPTIONS.logical_name, (_DELETE,)),
)

FUNCTIONS: Mapping[str, Function] = {
    f.name: f
    for f in (
        Function(
            name="authorizer",
            handler=entry.AUTHORIZER,
            triggers=(Trigger.WEBSOCKET_AUTHORIZER,),
            memory_mb=256,
            timeout_s=10,
            environment=_LOGS | _TOKENS,
            # It makes no DynamoDB call today; the handshake waits on it, so any would be bounded.
            store_budget=ROUTER,
        ),
        Function(
            name="connect",
            handler=entry.CONNECT,
            triggers=(Trigger.WEBSOCKET_CONNECT,),
            memory_mb=256,
            timeout_s=10,
            environment=_LOGS | _TABLES,
            tables=(TableAccess(CONNECTIONS.logical_name, (_PUT,)),),
            # The handshake waits on it, under API Gateway's 29 s integration limit.
            store_budget=ROUTER,
        ),
        Function(
            name="disconnect",
            handler=entry.DISCONNECT,
            triggers=(Trigger.WEBSOCKET_DISCONNECT,),
            memory_mb=256,
            timeout_s=10,
            environment=_LOGS | _TABLES,
            tables=_FORGET_CONNECTION,
            # Nobody waits on it (the connection is already gone): it may outlast a short outage.
            store_budget=PATIENT,
        ),
        Function(
            name="router",
            handler=entry.ROUTER,
            triggers=(Trigger.WEBSOCKET_DEFAULT,),
            memory_mb=512,
            timeout_s=API_INTEGRATION_LIMIT_S,
            environment=_LOGS | _TABLES | _REQUESTS | _ADMISSION | {config.EVENT_BUS},
            tables=(
                # get_request; create_request; request_cancel and finish_request.
                TableAccess(REQUESTS.logical_name, (_GET, _PUT, _UPDATE)),
                # count_active (the per-user cap).
                TableAccess(REQUESTS.logical_name, (_QUERY,), index=REQUESTS_BY_ACTIVE_OWNER),
                # touch_connection (ping); the rate limit's shared bucket
                # (refill_bucket, charge_bucket).
                TableAccess(CONNECTIONS.logical_name, (_GET, _UPDATE)),
                _CIRCUITS,
                # subscribe, unsubscribe, subscribers; ask_to_stop (a cancel's stop marker);
                # a topic's retained row.
                TableAccess(SUBSCRIPTIONS.logical_name, (_DELETE, _GET, _PUT, _QUERY)),
                *_FORGET_CONNECTION,
            ),
            posts_to_connections=True,
            store_budget=ROUTER,
        ),
        Function(
            name="processor",
            handler=entry.PROCESSOR,
            triggers=(Trigger.REQUESTS_STREAM,),
            # Lambda's maximum: one attempt of an async request runs at most this long,
            # then the lease expires and the sweeper re-drives it from its checkpoint.
            memory_mb=1024,
            timeout_s=900,
            environment=_LOGS | _TABLES | _REQUESTS | {config.EVENT_BUS},
            tables=(
                # cancel_requested; claim, save_progress, schedule_retry, finish_request.
                TableAccess(REQUESTS.logical_name, (_GET, _UPDATE)),
                # watchers (subscribers and the stop marker); stop_asked.
                TableAccess(SUBSCRIPTIONS.logical_name, (_GET, _QUERY)),
                _CIRCUITS,
                *_FORGET_CONNECTION,
            ),
            posts_to_connections=True,
        ),
        Function(
            name="sweeper",
            handler=entry.SWEEPER,
            triggers=(Trigger.SCHEDULE,),
            memory_mb=256,
            timeout_s=60,
            environment=_LOGS | _TABLES | _REQUESTS | {config.EVENT_BUS},
            tables=(
                # due_requests.
                TableAccess(REQUESTS.logical_name, (_QUERY,), index=REQUESTS_BY_DUE),
                # unkeyed_due_items: the per-user cap's index, scanned.
                TableAccess(REQUESTS.logical_name, (_SCAN,), index=REQUESTS_BY_ACTIVE_OWNER),
                # due_requests' reads of what the index found; redrive_request, finish_request,
                # take_over_request.
                TableAccess(REQUESTS.logical_name, (_BATCH_GET, _UPDATE)),
                # The regions' heartbeats (`streamer.store.heartbeats`): beat, last_beats.
                TableAccess(CONNECTIONS.logical_name, (_PUT, _BATCH_GET)),
                # subscribers.
                TableAccess(SUBSCRIPTIONS.logical_name, (_QUERY,)),
                *_FORGET_CONNECTION,
            ),
            posts_to_connections=True,
            description="Re-drive requests whose lease expired or whose retry is due",
        ),
        Function(
            name="poller",
            handler=entry.POLLER,
            triggers=(Trigger.SCHEDULE,),
            # One run polls every due WAITING request, 20 at a time.
            memory_mb=512,
            timeout_s=300,
            environment=_LOGS | _TABLES | _REQUESTS | {config.POLLER_BATCH_SIZE, config.EVENT_BUS},
            tables=(
                # waiting_requests.
                TableAccess(REQUESTS.logical_name, (_QUERY,), index=REQUESTS_BY_DUE),
                # cancel_requested; waiting_requests' reads of what the index found;
                # claim_poll, save_progress, wait_request, finish_request.
                TableAccess(REQUESTS.logical_name, (_BATCH_GET, _GET, _UPDATE)),
                # watchers (subscribers and the stop marker); stop_asked: a poll runs as an
                # attempt, whose cancellation checks read the marker (`streamer.attempt`).
                TableAccess(SUBSCRIPTIONS.logical_name, (_GET, _QUERY)),
                _CIRCUITS,
                *_FORGET_CONNECTION,
            ),
            posts_to_connections=True,
            description="Poll the external work of WAITING requests whose poll time came",
        ),
        Function(
            name="http",
            handler=entry.HTTP,
            triggers=(Trigger.HTTP_API,),
            memory_mb=512,
            timeout_s=API_INTEGRATION_LIMIT_S,
            # It runs the router's requests and hands out the WebSocket URL for following a
            # request; the shared authorizer verifies tokens, so it gets no token settings.
            environment=_LOGS | _TABLES | _REQUESTS | _ADMISSION | {config.WEBSOCKET_URL},
            tables=(
                # A caller without a connection: get_request (also the long poll),
                # create_request, finish_request of a sync request with an id; count_active.
                TableAccess(REQUESTS.logical_name, (_GET, _PUT, _UPDATE)),
                TableAccess(REQUESTS.logical_name, (_QUERY,), index=REQUESTS_BY_ACTIVE_OWNER),
                _CIRCUITS,
            ),
            # It runs the router (`streamer.entry.router.current_router`), long poll included.
            store_budget=ROUTER,
        ),
        Function(
            name="publish",
            handler=entry.PUBLISH,
            triggers=(Trigger.NOTIFICATIONS,),
            memory_mb=256,
            timeout_s=30,
            environment=_LOGS | _TABLES | {config.TOPIC_RETENTION_S},
            tables=(
                # retain (a topic's last message), subscribers_of_key.
                TableAccess(SUBSCRIPTIONS.logical_name, (_PUT, _QUERY)),
                # connections_of_user.
                TableAccess(CONNECTIONS.logical_name, (_QUERY,), index=CONNECTIONS_BY_USER),
                *_FORGET_CONNECTION,
            ),
            posts_to_connections=True,
        ),
    )
}


def triggered_by(trigger: Trigger) -> tuple[Function, ...]:
    """The functions `trigger` invokes, in declaration order."""
    return tuple(f for f in FUNCTIONS.values() if trigger in f.triggers)


def the_one(trigger: Trigger) -> Function:
    """The single function `trigger` invokes (a route or a stream has exactly one)."""
    (function,) = triggered_by(trigger)
    return function
