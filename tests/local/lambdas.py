"""Lambda handlers for the worker-process tests (`tests/local/test_isolation.py`)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

#: Module state: kept by an execution environment between the invocations it serves.
invocations = 0
_lock = threading.Lock()


def remember(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Count this environment's invocations; wait `seconds`; say who ran it with what context."""
    global invocations
    with _lock:
        invocations += 1
        count = invocations
    if "seconds" in event:
        time.sleep(event["seconds"])
    return {
        "pid": os.getpid(),
        "invocations": count,
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "event": event,
    }


def mark_started(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Create the file the event names, then `remember`: the invocation has begun."""
    with open(event["started"], "x"):
        pass
    return remember(event, context)


def remember_or_exit(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """`exit_with` when the event has a status, else `remember`."""
    if "status" in event:
        exit_with(event, context)
    return remember(event, context)


def remember_then_exit(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """`remember`, and end the process `exit_after` seconds after answering (if given)."""
    if "exit_after" in event:

        def exit_later() -> None:
            time.sleep(event["exit_after"])
            os._exit(0)

        threading.Thread(target=exit_later, daemon=True).start()
    return remember(event, context)


def exit_with(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """End the process as a crashing runtime would, with the event's exit status."""
    os._exit(event["status"])


def unserialisable(event: dict[str, Any], context: Any) -> object:
    return {"when": object()}


def list_tables(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One DynamoDB call through the runtime's own session, at the endpoint of the event."""
    from streamer import aws

    client = aws.create_client(
        "dynamodb",
        endpoint_url=event["endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    return {"tables": client.list_tables()["TableNames"]}
