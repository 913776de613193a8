"""Each function's DynamoDB call budget, as the function catalog declares it.

The catalog (`streamer.catalog.Function.store_budget`) says how long each
function's DynamoDB calls may take; the function's environment may change it
(`streamer.aws.configured_budget`). An entry point names itself by its handler
string (`streamer.entry`) and runs under its budget with `runs_under_its_budget`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from streamer import aws
from streamer.catalog import FUNCTIONS

Handler = TypeVar("Handler", bound=Callable[..., Any])


def budget_of(handler: str) -> aws.CallBudget:
    """The DynamoDB call budget of the function whose entry point is `handler`."""
    (function,) = (f for f in FUNCTIONS.values() if f.handler == handler)
    return aws.configured_budget(function.store_budget)


def runs_under_its_budget(handler: str) -> Callable[[Handler], Handler]:
    """Run the decorated entry point's DynamoDB calls under `budget_of(handler)`."""

    def decorate(entry_point: Handler) -> Handler:
        @functools.wraps(entry_point)
        def run(*args: Any, **kwargs: Any) -> Any:
            with aws.dynamodb_budget(budget_of(handler)):
                return entry_point(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate
