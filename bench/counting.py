"""The local stack, counting what it does: `python -m bench.counting COUNTS_FILE [local flags]`.

Runs `python -m local` with meters on the edges the runtime calls through,
and keeps COUNTS_FILE up to date (rewritten whenever a count changes, at most
every 0.1 s, and once more at exit) with:

- every AWS API call the process makes, per service and operation: for
  DynamoDB per table too, with the capacity units DynamoDB reports
  (`ReturnConsumedCapacity=INDEXES` is asked on every call that takes it, so
  index writes are included) and the writes refused by their condition;
- every Lambda invocation, per function, with its duration.

Nothing here changes what the stack does: the meters are a botocore event
handler every botocore session registers (`botocore.handlers.BUILTIN_HANDLERS`)
and a wrapper around each function handler the stack resolves. The local
stack keeps no meters of its own, so this module brings them along.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.handlers

from local import functions
from local.__main__ import main as local_main

READS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


def _units(consumed: Any) -> float:
    """Total capacity units of a `ConsumedCapacity` (one entry, or a list for batches)."""
    if isinstance(consumed, list):
        return sum(_units(entry) for entry in consumed)
    if isinstance(consumed, dict):
        return float(consumed.get("CapacityUnits", 0.0))
    return 0.0


#: The circuit breaker keeps its counts on the connections table (`streamer.store.circuits`).
CIRCUIT_KEY_PREFIX = "circuit#"
CIRCUITS = " (circuits)"


def _purpose(params: dict) -> str:
    """` (circuits)` for a call on a circuit breaker's item, so that its calls are counted
    apart from the connection records' (the rate limit's) on the same table."""
    key = params.get("Key", {}).get("connection_id", {})
    value = key.get("S", "") if isinstance(key, dict) else ""
    return CIRCUITS if value.startswith(CIRCUIT_KEY_PREFIX) else ""


class Meter:
    """Counts calls and invocations from any thread; `snapshot` gives them as JSON data."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, dict[str, float]] = defaultdict(
            lambda: {"calls": 0, "units": 0.0, "failed_conditions": 0}
        )
        self._invocations: dict[str, dict[str, float]] = defaultdict(
            lambda: {"invocations": 0, "seconds": 0.0}
        )
        self._version = 0

    @property
    def version(self) -> int:
        return self._version

    # botocore events

    def ask_for_capacity(
        self, params: dict, model: Any, context: dict | None = None, **_: Any
    ) -> None:
        if "ReturnConsumedCapacity" in model.input_shape.members:
            params["ReturnConsumedCapacity"] = "INDEXES"
        if context is not None:
            context["bench_table"] = params.get("TableName", "") + _purpose(params)

    def after_call(self, parsed: dict, model: Any, context: dict, **_: Any) -> None:
        service = model.service_model.service_name
        operation = model.name
        key = f"{service} {operation}"
        if service == "dynamodb" and (operation in READS or operation in WRITES):
            key = f"{key} {context.get('bench_table', '')}"
        code = parsed.get("Error", {}).get("Code") if isinstance(parsed, dict) else None
        with self._lock:
            entry = self._calls[key]
            entry["calls"] += 1
            entry["units"] += _units(parsed.get("ConsumedCapacity"))
            if code == "ConditionalCheckFailedException":
                entry["failed_conditions"] += 1
            self._version += 1

    def handlers(self) -> list[tuple[str, Callable]]:
        return [
            ("before-parameter-build.dynamodb", self.ask_for_capacity),
            ("after-call", self.after_call),
        ]

    # Lambda invocations

    def timed(self, resolve: Callable[[str], Callable]) -> Callable[[str], Callable]:
        """Wrap a handler resolver so every handler it returns is timed."""

        def resolve_timed(handler_name: str) -> Callable:
            handler = resolve(handler_name)

            def invoke(event: dict, context: Any) -> object:
                started = time.perf_counter()
                try:
                    return handler(event, context)
                finally:
                    with self._lock:
                        entry = self._invocations[context.function_name]
                        entry["invocations"] += 1
                        entry["seconds"] += time.perf_counter() - started
                        self._version += 1

            return invoke

        return resolve_timed

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "version": self._version,
                "calls": {key: dict(value) for key, value in self._calls.items()},
                "invocations": {key: dict(value) for key, value in self._invocations.items()},
            }


def _write(path: Path, meter: Meter) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(meter.snapshot(), indent=1, sort_keys=True))
    os.replace(partial, path)


def _keep_written(path: Path, meter: Meter, stop: threading.Event) -> None:
    written = -1
    while not stop.wait(0.1):
        if meter.version != written:
            written = meter.version
            _write(path, meter)


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: python -m bench.counting COUNTS_FILE [python -m local flags]")
        return 2
    path = Path(argv[0])
    meter = Meter()
    # Every botocore session registers these as it is made, so each client the
    # stack or the runtime creates from now on carries the meter.
    botocore.handlers.BUILTIN_HANDLERS.extend(meter.handlers())
    functions.resolve_handler = meter.timed(functions.resolve_handler)
    stop = threading.Event()
    writer = threading.Thread(target=_keep_written, args=(path, meter, stop), daemon=True)
    writer.start()
    try:
        return local_main(argv[1:])
    finally:
        stop.set()
        _write(path, meter)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
