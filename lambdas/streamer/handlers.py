"""The handler API for application authors, and the registry of actions.

An application is a module with an `App` named `app`; the runtime loads the
module named by `STREAMER_APP`. A handler is a function decorated with
`app.action(...)` or a `Handler` subclass registered with `app.register(...)`:

    app = App()

    @app.action("resize_image", estimated_duration=30)
    def resize_image(request: Request, progress: Progress) -> dict:
        progress.report(50, "half way")
        return {"url": "..."}

Handlers estimated at or under the async threshold (5 s by default) run
inside the router and answer at once; longer ones are stored and run by the
stream processor, which reports progress to the client.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from streamer.errors import ValidationError

Validator = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Request:
    """What a handler is asked to do, and on whose behalf.

    Identity comes from the authorizer, never from the client's message.
    `checkpoint` is the state the handler saved on an earlier attempt, if any.
    """

    request_id: str
    action: str
    payload: dict[str, Any]
    user_id: str
    tenant_id: str
    permissions: frozenset[str] = frozenset()
    metadata: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 1
    checkpoint: Any = None


@dataclass(frozen=True)
class Waiting:
    """Returned by `process` or `poll`: the work runs elsewhere; poll it again later.

    The request is stored WAITING with `state` (small JSON: e.g. the external
    job id); the scheduled poller calls `poll(request, state, progress)` once
    `poll_after_s` passed. `deadline_s` (from the first `Waiting` only) bounds
    the whole wait: past it the request ends FAILED with TIMEOUT.
    """

    poll_after_s: float
    state: dict[str, Any] = field(default_factory=dict)
    deadline_s: float = 24 * 3600


class Progress(Protocol):
    """How a running handler talks to its client.

    `report` is cheap to call often: updates are coalesced before they are sent.
    It never raises for delivery failures; it raises `RequestCancelled` once the
    request was cancelled, so a handler that ignores `cancelled` still stops.
    """

    @property
    def cancelled(self) -> bool: ...

    def report(
        self, percentage: float, message: str = "", metadata: dict[str, Any] | None = None
    ) -> None: ...

    def checkpoint(self, state: Any) -> None: ...


class Handler:
    """Base class for class-based handlers.

    Set `action` and `estimated_duration` (seconds or a timedelta); override
    `validate` to refuse bad payloads with `ValidationError({field: reason})`
    and `process` to do the work and return a JSON-serialisable result.
    """

    action: str = ""
    estimated_duration: float | timedelta = 0.0
    #: Run sync on the invocation's thread, stopped at its deadline by a signal
    #: (`streamer.deadline`). False: on a worker thread, for a handler a signal must
    #: not interrupt (docs/protocol.md, "Sync handlers and their deadline").
    runs_inline: bool = True

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Return the payload to run with (possibly normalised), or raise `ValidationError`."""
        return payload

    def process(self, request: Request, progress: Progress) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.process")

    def poll(self, request: Request, state: dict[str, Any], progress: Progress) -> Any:
        """Check external work handed off by returning `Waiting`: its result, or `Waiting`."""
        raise NotImplementedError(f"{type(self).__name__}.poll")

    @property
    def estimated_duration_ms(self) -> int:
        duration = self.estimated_duration
        seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
        return round(seconds * 1000)


class FunctionHandler(Handler):
    """A `Handler` made from a plain function by `App.action`."""

    def __init__(
        self,
        action: str,
        function: Callable[[Request, Progress], Any],
        estimated_duration: float | timedelta,
        validator: Validator | None,
        *,
        inline: bool = True,
    ) -> None:
        self.action = action
        self.estimated_duration = estimated_duration
        self.runs_inline = inline
        self._function = function
        self._validator = validator

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._validator(payload) if self._validator else payload

    def process(self, request: Request, progress: Progress) -> Any:
        return self._function(request, progress)


class App:
    """The actions of one application, by name."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, handler: Handler) -> Handler:
        """Add a handler; an action name may be registered once."""
        from streamer.protocol import ACTION_PATTERN, SYSTEM_ACTIONS

        if not ACTION_PATTERN.fullmatch(handler.action or ""):
            raise ValueError(f"invalid action name {handler.action!r}")
        if handler.action in SYSTEM_ACTIONS:
            raise ValueError(f"{handler.action!r} is a reserved system action")
        if handler.action in self._handlers:
            raise ValueError(f"action {handler.action!r} is already registered")
        self._handlers[handler.action] = handler
        return handler

    def action(
        self,
        name: str,
        *,
        estimated_duration: float | timedelta,
        validate: Validator | None = None,
        inline: bool = True,
    ) -> Callable[[Callable[[Request, Progress], Any]], FunctionHandler]:
        """Decorator registering a function `(request, progress) -> result` as an action.

        `inline=False`: run sync on a worker thread, not interrupted at its deadline
        (`Handler.runs_inline`).
        """

        def decorate(function: Callable[[Request, Progress], Any]) -> FunctionHandler:
            handler = FunctionHandler(name, function, estimated_duration, validate, inline=inline)
            self.register(handler)
            return handler

        return decorate

    def get(self, action: str) -> Handler | None:
        return self._handlers.get(action)

    def __iter__(self) -> Iterator[Handler]:
        return iter(self._handlers.values())


def load_app(module_name: str) -> App:
    """Import the application module and return its `app`."""
    module = importlib.import_module(module_name)
    app = getattr(module, "app", None)
    if not isinstance(app, App):
        raise TypeError(f"module {module_name!r} has no `app = App()`")
    return app


__all__ = ["App", "Handler", "Progress", "Request", "ValidationError", "Waiting", "load_app"]
