"""One botocore session per process, shared by every AWS client the runtime makes,
and how long each function lets a DynamoDB call take.

A botocore session loads each service's JSON model once; a client made from a
fresh session loads it again. Measured on a 2-core machine: about 50-70 ms for
the first DynamoDB client of a session, about 2 ms for another client of the
same session. PynamoDB makes a session for each model's connection (and for
each thread), so without this a cold start paid that load three times, and a
local stack once per thread that raced to the first call.

botocore sessions are not thread-safe while they create clients, so clients
are created under one lock; the clients themselves are thread-safe.

A DynamoDB call's budget (connect and read timeouts per attempt, attempts in
all) is chosen per function, in the function catalog (`streamer.catalog`,
`store_budget`): those API Gateway waits on (authorizer, `$connect`, router,
HTTP API) answer inside its 29 s integration timeout, so they give up on the
store within a few seconds (`ROUTER`) and answer UNAVAILABLE; the others keep
PynamoDB's patience (`PATIENT`). Their calls run inside `dynamodb_budget(...)`
(`streamer.budgets`, the router's `store_budget`); calls outside any get
`PATIENT`, which the catalog's other functions declare. The function's
environment may change either (`configured_budget`); a malformed value is a
`streamer.config.ConfigError`. PynamoDB's clients and the store's own
(`dynamodb_client`) take the budget of the context they are used in.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from streamer.config import ConfigError, parse_float, parse_int

_lock = threading.RLock()
_session: Any = None

#: Seconds to open a connection to DynamoDB, per attempt.
CONNECT_TIMEOUT_S = "STREAMER_DYNAMODB_CONNECT_TIMEOUT_S"
#: Seconds to wait for DynamoDB's answer on an open connection, per attempt.
READ_TIMEOUT_S = "STREAMER_DYNAMODB_READ_TIMEOUT_S"
#: Attempts of one DynamoDB call in all, the first included (botocore's `total_max_attempts`).
MAX_ATTEMPTS = "STREAMER_DYNAMODB_MAX_ATTEMPTS"
ENVIRONMENT = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S, MAX_ATTEMPTS)


@dataclass(frozen=True)
class CallBudget:
    """How long one DynamoDB call may take: per-attempt timeouts and attempts in all.

    Retries use botocore's `standard` mode: it retries throttling, 5xx answers
    and connection and read timeouts, with exponential backoff and jitter
    (https://docs.aws.amazon.com/boto3/latest/guide/retries.html). `adaptive`
    adds client-side rate limiting on throttling errors: the calls of a
    throttled client wait for its token bucket, so a function that meets
    DynamoDB throttling slows itself down instead of spending its attempts.
    The longest a call can take is about `max_attempts * (connect + read)` plus
    backoff, and in `adaptive` mode the wait for the bucket.
    """

    connect_timeout_s: float
    read_timeout_s: float
    max_attempts: int
    retry_mode: str = "standard"

    def __post_init__(self) -> None:
        if self.connect_timeout_s <= 0 or self.read_timeout_s <= 0 or self.max_attempts < 1:
            raise ValueError(f"a call budget needs positive timeouts and attempts: {self}")
        if self.retry_mode not in ("standard", "adaptive"):
            raise ValueError(f"a call budget retries in standard or adaptive mode: {self}")

    @property
    def retries(self) -> dict[str, Any]:
        return {"mode": self.retry_mode, "total_max_attempts": self.max_attempts}

    def client_config(self) -> Any:  # -> botocore.config.Config; imported late
        """The config of a botocore client whose calls keep to this budget."""
        from botocore.config import Config

        return Config(
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
            retries=self.retries,  # type: ignore[arg-type]
        )


#: The router's: at most about 2 x (1 + 2) s and a backoff, well inside API
#: Gateway's integration timeout, "50 milliseconds - 29 seconds ... Can be
#: increased: No" (https://docs.aws.amazon.com/apigateway/latest/developerguide/
#: apigateway-execution-service-websocket-limits-table.html). DynamoDB answers a
#: single-item call in milliseconds; an attempt that takes seconds is an outage.
ROUTER = CallBudget(connect_timeout_s=1, read_timeout_s=2, max_attempts=2)
#: The other functions' (processor, sweeper, ...): PynamoDB's own defaults
#: (https://github.com/pynamodb/PynamoDB/blob/master/docs/settings.rst: connect
#: 15 s, read 30 s, 3 retries), so their calls outlast a short outage. Both
#: replace botocore's (botocore.config.Config: connect_timeout and read_timeout
#: 60 s; the boto3 retries guide above: legacy mode, 5 attempts). Nobody waits on
#: their answer, so under DynamoDB throttling they back off client-side too
#: (`adaptive`); the router keeps `standard`, whose only waits are its backoffs.
PATIENT = CallBudget(connect_timeout_s=15, read_timeout_s=30, max_attempts=4, retry_mode="adaptive")

_budget: ContextVar[CallBudget | None] = ContextVar("streamer_dynamodb_budget", default=None)


def _positive(env: Mapping[str, str], name: str, default: Any, parse: Any) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value = parse(name, raw)
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def budget_from_env(default: CallBudget, env: Mapping[str, str] | None = None) -> CallBudget:
    """`default`, with what `STREAMER_DYNAMODB_*` in `env` (default `os.environ`) change.

    Each function has its own environment on Lambda, so a value set on one
    function changes that function's budget only. A malformed value is a
    `ConfigError` naming the variable and the value, as for every setting
    (`streamer.config`): the function does not run on a budget nobody configured.
    """
    env = os.environ if env is None else env
    return CallBudget(
        connect_timeout_s=_positive(env, CONNECT_TIMEOUT_S, default.connect_timeout_s, parse_float),
        read_timeout_s=_positive(env, READ_TIMEOUT_S, default.read_timeout_s, parse_float),
        max_attempts=_positive(env, MAX_ATTEMPTS, default.max_attempts, parse_int),
        retry_mode=default.retry_mode,
    )


def configured_budget(default: CallBudget) -> CallBudget:
    """`default` as this process's environment changes it (`budget_from_env`)."""
    return _configured(default, tuple(os.environ.get(name, "") for name in ENVIRONMENT))


@functools.lru_cache(maxsize=16)
def _configured(default: CallBudget, values: tuple[str, ...]) -> CallBudget:
    return budget_from_env(default, dict(zip(ENVIRONMENT, values, strict=True)))


class dynamodb_budget:  # used as a function: `with dynamodb_budget(budget):`
    """DynamoDB calls of this thread (and context) use `budget` until the block ends.

    A context, not a process setting: the local stack runs every function in
    one process, each invocation on its own thread. A class rather than a
    `@contextmanager` generator: the router enters one per message.
    """

    __slots__ = ("_token", "budget")

    def __init__(self, budget: CallBudget) -> None:
        self.budget = budget

    def __enter__(self) -> None:
        self._token = _budget.set(self.budget)

    def __exit__(self, *exc_info: object) -> None:
        _budget.reset(self._token)


def current_budget() -> CallBudget:
    """The budget of this context's DynamoDB calls: the one set around them, else `PATIENT`."""
    return _budget.get() or configured_budget(PATIENT)


def session() -> Any:  # -> botocore.session.Session; imported late, off cold paths
    """The process's botocore session, made on first use."""
    global _session
    with _lock:
        if _session is None:
            import botocore.session

            _session = botocore.session.get_session()
        return _session


def create_client(service_name: str, **kwargs: Any) -> Any:
    """A botocore client of `service_name` from the process's session."""
    with _lock:
        return session().create_client(service_name, **kwargs)


def dynamodb_client(**kwargs: Any) -> Any:
    """A DynamoDB botocore client whose calls keep to this context's budget (`current_budget`),
    the same as the context's PynamoDB calls."""
    return create_client("dynamodb", config=current_budget().client_config(), **kwargs)


def share_with_pynamodb() -> None:
    """Make PynamoDB's connections take their session and budget from here, one client at a time.

    PynamoDB creates a connection's client on its first call, without a lock;
    from one shared session, threads racing to their first call would create
    clients concurrently, which botocore does not allow. The connection's
    `client` property is wrapped (once) to run under this module's lock and to
    hand out one client per budget: the connection's timeouts and retries are
    fixed when its client is made, and PynamoDB has no per-call setting.

    The clients are kept with the session, one per budget and endpoint, not per
    connection: every model (each table, and the circuit items' model on the
    connections table) has a connection of its own, and a client made per
    connection cost a cold start a client per table it touched. A client is not
    bound to a table, and botocore clients are thread-safe ("Multithreading or
    multiprocessing with clients",
    https://boto3.amazonaws.com/v1/documentation/api/latest/guide/clients.html).
    """
    import pynamodb.connection.base as base

    base.get_session = session
    if getattr(base.Connection.client.fget, "_streamer_locked", False):
        return
    unlocked = base.Connection.client.fget

    def client(connection: Any) -> Any:
        budget = current_budget()
        with _lock:
            shared = session()
            clients = shared.__dict__.setdefault("_streamer_pynamodb_clients", {})
            key = (
                budget,
                connection.region,
                connection.host,
                connection._max_pool_connections,
                connection._aws_access_key_id,
            )
            # PynamoDB makes a client from these when it has none (or its
            # credentials were lost), and keeps it in `_client`.
            connection._client = clients.get(key)
            connection._connect_timeout_seconds = budget.connect_timeout_s
            connection._read_timeout_seconds = budget.read_timeout_s
            connection._retry_configuration = budget.retries
            clients[key] = unlocked(connection)
            return clients[key]

    client._streamer_locked = True  # type: ignore[attr-defined]
    base.Connection.client = property(client)  # type: ignore[method-assign]
