"""The catalog's functions as the local stack runs them, and which trigger invokes which.

`streamer.catalog` declares the functions; the local stack starts exactly those, with
the catalog's handlers, timeouts and memory, and gives each trigger it plays (the
gateway's authorizer and routes, the stream mapping, the schedules, the HTTP API, the
notification ingress) the function the catalog names for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from local.event_source_mapping import MappingConfig
from local.functions import FunctionSpec
from streamer import catalog
from streamer.catalog import Trigger

F = TypeVar("F")


class WiringError(Exception):
    """The functions started are not the catalog's."""


#: The stream processor's concurrency limit unless told otherwise: the processor's
#: default reserved concurrency when deployed, 100.
DEFAULT_PROCESSOR_CONCURRENCY = 100
#: How many invocations of a function without a reserved concurrency run at once unless
#: told otherwise: each is an execution environment, a worker process (about 25 MiB of its
#: own beside what it shares with the zygote); most of their time is spent waiting on
#: DynamoDB, so a burst needs more of them than there are cores.
DEFAULT_FUNCTION_CONCURRENCY = 16


def local_name(function: catalog.Function) -> str:
    """The name the local stack runs a catalog function under (its Lambda function name)."""
    return f"streamer-{function.name}"


def catalog_function(name: str) -> catalog.Function | None:
    """The catalog function the local stack runs as `name`; None for any other name."""
    return next((f for f in catalog.FUNCTIONS.values() if local_name(f) == name), None)


def function_specs(
    mapping: MappingConfig,
    processor_timeout_s: float | None = None,
    processor_concurrency: int = DEFAULT_PROCESSOR_CONCURRENCY,
    function_concurrency: int = DEFAULT_FUNCTION_CONCURRENCY,
) -> dict[str, FunctionSpec]:
    """The catalog's functions as Lambda runs them: handler, timeout, memory, concurrency.

    A function triggered otherwise runs at most `function_concurrency` invocations at
    once (on AWS, the account's unreserved concurrency); more wait for one to end.

    The function the stream invokes gets `processor_timeout_s` when given (its lease
    follows it), one invocation per lane at a time, as the mapping's
    ParallelizationFactor allows, and `processor_concurrency` as its reserved
    concurrency: invocations past it are throttled and the mapping retries them.
    A scheduled function runs once at a time.
    """
    specs = {}
    for function in catalog.FUNCTIONS.values():
        timeout_s: float = function.timeout_s
        concurrency = function_concurrency
        reserved = None
        if Trigger.REQUESTS_STREAM in function.triggers:
            if processor_timeout_s is not None:
                timeout_s = processor_timeout_s
            concurrency = mapping.parallelization_factor
            reserved = processor_concurrency
        elif Trigger.SCHEDULE in function.triggers:
            concurrency = 1
        specs[function.name] = FunctionSpec(
            local_name(function),
            function.handler,
            timeout_s=timeout_s,
            memory_mb=function.memory_mb,
            concurrency=concurrency,
            reserved_concurrency=reserved,
        )
    return specs


@dataclass(frozen=True)
class Wiring(Generic[F]):
    """Which function each trigger of the local stack invokes, from the catalog."""

    authorizer: F
    connect: F
    disconnect: F
    default_route: F
    stream: F
    http: F
    notifications: F
    #: The scheduled functions, by name.
    scheduled: dict[str, F]


def wire(functions: Mapping[str, F]) -> Wiring[F]:
    """Give each trigger its function; `functions` must be exactly the catalog's.

    Raises `WiringError` for a function the catalog does not declare, or a declared one
    that is missing: the local stack runs what is deployed, no more and no less.
    """
    extra = sorted(set(functions) - set(catalog.FUNCTIONS))
    missing = sorted(set(catalog.FUNCTIONS) - set(functions))
    if extra or missing:
        raise WiringError(f"functions not in the catalog: {extra}; not started: {missing}")

    def the_one(trigger: Trigger) -> F:
        return functions[catalog.the_one(trigger).name]

    return Wiring(
        authorizer=the_one(Trigger.WEBSOCKET_AUTHORIZER),
        connect=the_one(Trigger.WEBSOCKET_CONNECT),
        disconnect=the_one(Trigger.WEBSOCKET_DISCONNECT),
        default_route=the_one(Trigger.WEBSOCKET_DEFAULT),
        stream=the_one(Trigger.REQUESTS_STREAM),
        http=the_one(Trigger.HTTP_API),
        notifications=the_one(Trigger.NOTIFICATIONS),
        scheduled={f.name: functions[f.name] for f in catalog.triggered_by(Trigger.SCHEDULE)},
    )
