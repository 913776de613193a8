"""Structured JSON logs: one object per line, with the request's context.

Context (`request_id`, `connection_id`, `tenant_id`, `action`, ...) is bound
with `log_context` and added to every record logged inside it, across the
runtime's modules.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("streamer_log_context")
_configured = False


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": int(record.created * 1000),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context.get({}))
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure_logging(level: str = "INFO") -> None:
    """Send the `streamer` loggers' records to stdout as JSON (once per process)."""
    global _configured
    logger = logging.getLogger("streamer")
    logger.setLevel(level)
    if _configured:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    _configured = True


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` to every record logged inside the block (this thread or task)."""
    merged = {**_context.get({}), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Add fields to the current context until the enclosing `log_context` ends."""
    _context.set({**_context.get({}), **{k: v for k, v in fields.items() if v is not None}})


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
