"""Lambda handlers for testing the killable function runner (`local.isolation`)."""

from __future__ import annotations

import os
import time
from typing import Any


def sleep(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Sleep `seconds`, then answer with the worker's pid and the time it had left."""
    time.sleep(event["seconds"])
    return {"pid": os.getpid(), "remaining_ms": context.get_remaining_time_in_millis()}


def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise ValueError("no such thing")
