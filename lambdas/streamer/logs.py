"""Structured JSON logs: one object per line, with the invocation's and the request's context.

Context (`request_id`, `connection_id`, `tenant_id`, `action`, ...) is bound
with `log_context` and added to every record logged inside it, across the
runtime's modules. `lambda_context` binds what Lambda tells about the
invocation: its request id, the function's name and version, whether this is
the process's first invocation (cold start) and the X-Ray trace id. The field
names are documented in docs/operations.md ("Log fields").

DEBUG lines are written for a sampled share of invocations
(`STREAMER_LOG_DEBUG_SAMPLE_RATE`), decided once per invocation, or always
when the level is DEBUG.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import random
import sys
import time
from collections.abc import Mapping
from typing import Any

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("streamer_log_context")
#: This invocation's draw in [0, 1): its DEBUG lines are written if it is under the rate.
_debug_draw: contextvars.ContextVar[float] = contextvars.ContextVar(
    "streamer_debug_draw", default=1.0
)
_configured = False
#: The handler `configure_logging` installed (the `streamer` logger's), once it has.
_handler: logging.StreamHandler | None = None
_level = logging.INFO
_debug_sample_rate = 0.0
_cold_start = True
#: Set by Lambda for each invocation: `Root=1-...;Parent=...;Sampled=1` (docs.aws.amazon.com/
#: lambda/latest/dg/configuration-envvars.html, "Defined runtime environment variables").
TRACE_HEADER_VARIABLE = "_X_AMZN_TRACE_ID"
_NO_FIELDS: dict[str, Any] = {}
#: `json.dumps(entry, default=str, separators=(",", ":"))` without a new encoder per line.
_encoder = json.JSONEncoder(default=str, separators=(",", ":"))


def _line(
    created: float, level: str, logger: str, message: str, fields: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A log line's object: when, level, logger, message, the bound context, then `fields`."""
    entry: dict[str, Any] = {
        "timestamp": int(created * 1000),
        "level": level,
        "logger": logger,
        "message": message,
        **_context.get(_NO_FIELDS),
    }
    if fields:
        entry.update(fields)
    return entry


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = _line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            getattr(record, "fields", None),
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(entry)


class _DebugSampling(logging.Filter):
    """Lets DEBUG records through only at level DEBUG or in a sampled invocation."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.INFO or _level <= logging.DEBUG:
            return True
        return _debug_draw.get() < _debug_sample_rate


def configure_logging(level: str = "INFO", debug_sample_rate: float = 0.0) -> None:
    """Send the `streamer` loggers' records to stdout as JSON (once per process).

    With a `debug_sample_rate` above 0, DEBUG records are made and written for
    that share of invocations (`lambda_context`).
    """
    global _configured, _handler, _level, _debug_sample_rate
    logger = logging.getLogger("streamer")
    logger.setLevel(level)
    _level, _debug_sample_rate = logger.level, debug_sample_rate
    if debug_sample_rate > 0:
        logger.setLevel(logging.DEBUG)
    if _configured:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_DebugSampling())
    logger.addHandler(handler)
    logger.propagate = False
    _configured, _handler = True, handler


def info(logger: logging.Logger, message: str, fields: Mapping[str, Any]) -> None:
    """`logger.info(message, extra={"fields": fields})`, the same line written, for a line
    logged on every message (the router's answer).

    Where the record would reach only the handler `configure_logging` installed (no other
    handler or filter on the way, INFO enabled), the line is written to it directly: the
    logging module's record (the caller's frame looked up, the thread's and process's
    names, a lock and a filter per handler) cost about a third of a warm sync message's CPU
    (docs/benchmarks.md, section 8). Anywhere else (not configured, a handler added, a
    test's capture) it goes through `logger.info`.
    """
    enabled = logger.isEnabledFor(logging.INFO) and not logger.disabled
    handler = _sole_handler(logger) if enabled else None
    if handler is None:
        logger.info(message, extra={"fields": fields})
        return
    line = _encoder.encode(_line(time.time(), "INFO", logger.name, message, fields))
    with handler.lock:  # type: ignore[union-attr]  # made by the handler's __init__
        try:
            handler.stream.write(line + handler.terminator)
            handler.flush()
        except Exception:
            handler.handleError(
                logger.makeRecord(logger.name, logging.INFO, "", 0, message, (), None)
            )


def _sole_handler(logger: logging.Logger) -> logging.StreamHandler | None:
    """The handler `configure_logging` installed, if a record of `logger` reaches it alone
    and through no filter but its own (which lets every INFO record through)."""
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        if current.handlers:
            handler = current.handlers[0]
            if current.propagate or len(current.handlers) != 1 or handler is not _handler:
                return None
            if handler.level > logging.INFO or len(handler.filters) != 1:
                return None
            return _handler
        current = current.parent if current.propagate else None
    return None


def trace_id(header: str | None) -> str | None:
    """The `Root` of an X-Ray trace header (`Root=1-...;Parent=...;Sampled=1`), if any."""
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Root" and value:
            return value
    return None


def invocation_fields(context: Any, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What Lambda's context object and environment tell about this invocation.

    Context attributes per docs.aws.amazon.com/lambda/latest/dg/python-context.html.
    Reading them marks the process warm: only its first invocation is a cold start.
    """
    global _cold_start
    env = os.environ if env is None else env
    fields = {
        "aws_request_id": getattr(context, "aws_request_id", None),
        "function_name": getattr(context, "function_name", None),
        "function_version": getattr(context, "function_version", None),
        "cold_start": _cold_start,
        "xray_trace_id": trace_id(env.get(TRACE_HEADER_VARIABLE)),
    }
    _cold_start = False
    return fields


def _merged(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The current context's fields with `fields` added (those that are not None)."""
    merged = _context.get(_NO_FIELDS).copy()
    for name, value in fields.items():
        if value is not None:
            merged[name] = value
    return merged


class lambda_context:  # used as a function: `with lambda_context(context):`
    """Bind the invocation's fields (`invocation_fields`) and draw its debug sample.

    A class, as `log_context` is: every invocation enters one."""

    __slots__ = ("_context", "_draw", "_token")

    def __init__(self, context: Any) -> None:
        self._context = context

    def __enter__(self) -> None:
        # Drawn only where it decides something: `_DebugSampling` reads it only at a rate
        # above 0 (at 0, no invocation is sampled, as with the default draw of 1.0).
        self._draw = _debug_draw.set(random.random()) if _debug_sample_rate > 0 else None
        self._token = _context.set(_merged(invocation_fields(self._context)))

    def __exit__(self, *exc_info: object) -> None:
        _context.reset(self._token)
        if self._draw is not None:
            _debug_draw.reset(self._draw)


class log_context:  # used as a function: `with log_context(...):`
    """Add `fields` to every record logged inside the block (this thread or task).

    A class rather than a `@contextmanager` generator: the router enters several of
    these per message, and a generator's setup cost more than the merge itself
    (docs/benchmarks.md, section 8)."""

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        self._token = _context.set(_merged(self._fields))

    def __exit__(self, *exc_info: object) -> None:
        _context.reset(self._token)


def bind(**fields: Any) -> None:
    """Add fields to the current context until the enclosing `log_context` ends."""
    _context.set(_merged(fields))


def bound_fields() -> Mapping[str, Any]:
    """The fields bound where this is called, not copied: to read, never to change."""
    return _context.get(_NO_FIELDS)


def current_fields() -> dict[str, Any]:
    """The fields bound where this is called (read by `streamer.tracing` for annotations)."""
    return dict(_context.get(_NO_FIELDS))


def copy_context() -> contextvars.Context:
    """The current context, to run work in another thread with the same log fields."""
    return contextvars.copy_context()


class Timer:
    """Milliseconds since creation, for `duration_ms` fields."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    @property
    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self._start) * 1000)
