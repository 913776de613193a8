"""The local stack, counting what it does: `python -m bench.counting COUNTS_FILE [local flags]`.

Runs `python -m local` with meters on the edges the runtime calls through,
and keeps COUNTS_FILE up to date (rewritten whenever a count changes, at most
every 0.1 s, and once more at exit) with:

- every AWS API call the process makes, per service and operation: for
  DynamoDB per table too, with the capacity units DynamoDB reports
  (`ReturnConsumedCapacity=INDEXES` is asked on every call that takes it, so
  index writes are included) and the writes refused by their condition;
- every Lambda invocation, per function, with its duration.

With `BENCH_LEDGER` set to a file name, every DynamoDB data call is also
appended to that file as one JSON line (`ledger_entry`): its operation,
table, the partition key value it addressed, the index it queried, and the
capacity units DynamoDB reported for the table and for each index, with the
index partition key value it wrote where the call shows it. The scale model
(`bench.scale_model`) replays these.

Nothing here changes what the stack does: the meters are a botocore event
handler every botocore session registers (`botocore.handlers.BUILTIN_HANDLERS`)
and a wrapper around each function handler the stack resolves. The local
stack keeps no meters of its own, so this module brings them along.
"""

from __future__ import annotations

import json
import os
import re
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
from streamer import schema

READS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
#: The environment variable naming the ledger file (see the module's docstring).
LEDGER = "BENCH_LEDGER"
#: Each table's and index's partition key attribute, by the table's logical name.
_SCHEMAS = {table.logical_name: table for table in schema.TABLES}


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


def _schema_of(table_name: str) -> schema.TableSchema | None:
    """The layout of a table named `<prefix>-<logical name>` (the stack's naming)."""
    return next(
        (t for name, t in _SCHEMAS.items() if table_name.endswith(f"-{name}")),
        None,
    )


def _value(attribute: Any) -> str | None:
    """The scalar of a DynamoDB-JSON attribute value (`{"S": "x"}` -> "x")."""
    if not isinstance(attribute, dict) or not attribute:
        return None
    return str(next(iter(attribute.values())))


def _queried_key(params: dict, hash_key: str) -> str | None:
    """The partition key value a Query's key condition names."""
    names = params.get("ExpressionAttributeNames", {})
    values = params.get("ExpressionAttributeValues", {})
    for name, placeholder in re.findall(
        r"(#?\w+)\s*=\s*(:\w+)", params.get("KeyConditionExpression", "")
    ):
        if names.get(name, name) == hash_key:
            return _value(values.get(placeholder))
    return None


def _split_units(consumed: Any) -> tuple[float, dict[str, float]]:
    """(table units, {index: units}) of one table's `ConsumedCapacity` (asked with INDEXES)."""
    if not isinstance(consumed, dict):
        return 0.0, {}
    indexes = {
        name: float(entry.get("CapacityUnits", 0.0))
        for name, entry in (consumed.get("GlobalSecondaryIndexes") or {}).items()
    }
    table = consumed.get("Table", {}).get("CapacityUnits")
    total = float(consumed.get("CapacityUnits", 0.0))
    return (float(table) if table is not None else total - sum(indexes.values())), indexes


def attribute_size(value: Any) -> int:
    """Bytes DynamoDB counts for one attribute value (strings by UTF-8 length, numbers by
    digits, maps and lists with their overhead):
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
    """
    kind, data = next(iter(value.items()))
    if kind == "S":
        return len(data.encode("utf-8"))
    if kind == "N":
        return (len(data.strip("-").replace(".", "").lstrip("0")) + 1) // 2 + 1
    if kind == "B":
        return len(data)
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: v}) for v in data)
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + attribute_size(v) + 1 for k, v in data.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in data)
    return 1


def item_size(item: dict) -> int:
    """Bytes of an item as DynamoDB counts them: names and values."""
    return sum(len(name.encode("utf-8")) + attribute_size(v) for name, v in item.items())


def _units_of(size: int) -> float:
    """Write units of an item of `size` bytes: one per started kilobyte."""
    return float(max(1, -(-size // 1024)))


def _updated_names(params: dict) -> tuple[set[str], set[str]]:
    """(attributes an UpdateExpression sets or adds to, attributes it removes)."""
    names = params.get("ExpressionAttributeNames", {})
    changed: set[str] = set()
    removed: set[str] = set()
    clauses = re.split(r"\b(SET|REMOVE|ADD|DELETE)\b", params.get("UpdateExpression", ""))
    for verb, body in zip(clauses[1::2], clauses[2::2], strict=False):
        for part in body.split(","):
            token = part.strip().split("=")[0].split()[0] if part.strip() else ""
            name = names.get(token, token).split(".")[0].split("[")[0]
            if name:
                (removed if verb == "REMOVE" else changed).add(name)
    return changed, removed


def estimated_write_units(
    operation: str,
    params: dict,
    parsed: dict,
    layout: schema.TableSchema,
    was_in: frozenset[str] | None = None,
) -> tuple[float, dict[str, float]]:
    """What DynamoDB would bill for one write, for an engine that reports no breakdown (moto).

    The table: one unit per started kilobyte of the item. Each index: a put when
    the item enters it, a delete when it leaves, both when the write changes the
    index's key, and one update when the item stays with a projected attribute
    changed; nothing when the write touches neither the key nor the projection
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.Writes),
    each by the size of the index entry (the whole item with projection ALL).
    `was_in`: the indexes the item was in before the write, where known (else
    an update that removes or changes an index's key is taken to have been in it).
    """
    item = params.get("Item") or parsed.get("Attributes") or {}
    size = item_size(item)
    keys = {layout.hash_key, layout.range_key} - {None}
    indexes: dict[str, float] = {}
    changed, removed = _updated_names(params) if operation == "UpdateItem" else (set(), set())
    for index in layout.indexes:
        index_keys = {index.hash_key, index.range_key} - {None}
        in_index = index_keys <= set(item)
        projected = {
            "ALL": set(item) | changed | removed,
            "INCLUDE": set(index.included),
            "KEYS_ONLY": set(),
        }[index.projection]
        entry = {k: v for k, v in item.items() if k in keys | index_keys | projected}
        units = _units_of(item_size(entry))
        before = True if was_in is None else index.name in was_in
        if operation == "PutItem":
            count = int(in_index) + int(before and was_in is not None)
        elif operation == "DeleteItem" or index_keys & removed:
            count = int(before)
        elif index_keys & changed:
            count = int(before) + int(in_index)
        else:
            count = 1 if in_index and projected & (changed | removed) else 0
        if count:
            indexes[index.name] = count * units
    return (_units_of(size) if item else 1.0), indexes


def indexes_holding(layout: schema.TableSchema, item: dict) -> frozenset[str]:
    """The sparse indexes an item is in: those whose key attributes it has."""
    return frozenset(
        i.name for i in layout.indexes if {i.hash_key, i.range_key} - {None} <= set(item)
    )


def ledger_entries(
    operation: str,
    params: dict,
    parsed: dict,
    *,
    estimate: bool = False,
    was_in: frozenset[str] | None = None,
) -> list[dict]:
    """What one DynamoDB data call did, per table: the ledger's lines for it.

    Each line: `op`, `table` (logical name), `key` (the partition key value
    addressed, None for a scan), `index` (the one queried, if any), `units`
    (table) and `index_units` ({index: units}), `index_keys` ({index: the
    partition key value the written item now has there, where the call's
    parameters or answer show it}), `failed` (refused by its condition).
    """
    failed = parsed.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
    consumed = parsed.get("ConsumedCapacity")
    by_table = {c.get("TableName"): c for c in consumed} if isinstance(consumed, list) else {}
    if operation == "BatchGetItem":
        lines = []
        for table_name, request in params.get("RequestItems", {}).items():
            layout = _schema_of(table_name)
            keys = request.get("Keys", [])
            units, _ = _split_units(by_table.get(table_name))
            for key in keys:
                lines.append(
                    {
                        "op": operation,
                        "table": layout.logical_name if layout else table_name,
                        "key": _value(key.get(layout.hash_key)) if layout else None,
                        "index": None,
                        "units": units / max(1, len(keys)),
                        "index_units": {},
                        "index_keys": {},
                        "failed": False,
                    }
                )
        return lines
    table_name = params.get("TableName", "")
    layout = _schema_of(table_name)
    if layout is None:
        return []
    index = params.get("IndexName")
    units, index_units = _split_units(consumed)
    estimated = estimate and operation in WRITES
    if estimated and not failed:
        units, index_units = estimated_write_units(operation, params, parsed, layout, was_in)
    item = params.get("Item") or {}
    written = item or (parsed.get("Attributes") if operation == "UpdateItem" else None) or {}
    if index is not None:
        hash_key = next(i.hash_key for i in layout.indexes if i.name == index)
        key = _queried_key(params, hash_key)
    elif operation == "Query":
        key = _queried_key(params, layout.hash_key)
    elif operation == "Scan":
        key = None
    else:
        key = _value((params.get("Key") or item).get(layout.hash_key))
    return [
        {
            "op": operation,
            "table": layout.logical_name,
            "key": key,
            "index": index,
            # A write refused by its condition is billed all the same (1 WRU up to 1 KB).
            "units": max(units, 1.0) if failed else units,
            "index_units": index_units,
            "index_keys": {
                i.name: _value(written.get(i.hash_key))
                for i in layout.indexes
                if operation in WRITES and written.get(i.hash_key)
            },
            "failed": failed,
            "estimated": estimated,
        }
    ]


class Meter:
    """Counts calls and invocations from any thread; `snapshot` gives them as JSON data."""

    def __init__(self, ledger: Path | None = None, *, estimate: bool = False) -> None:
        self._lock = threading.Lock()
        self._ledger = ledger.open("a", encoding="utf-8") if ledger else None
        #: Whether the engine reports no capacity breakdown (moto): the ledger estimates writes.
        self._estimate = estimate
        #: (table, key) -> the indexes the item is in, as this process's writes left it.
        self._held: dict[tuple[str, str | None], frozenset[str]] = {}
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
            context["bench_params"] = params

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
            if self._ledger is not None and service == "dynamodb" and isinstance(parsed, dict):
                params = context.get("bench_params") or {}
                self._write_ledger(operation, params, parsed)
                self._ledger.flush()

    def _write_ledger(self, operation: str, params: dict, parsed: dict) -> None:
        """Append the call's lines (under the lock); track which indexes each item is in."""
        layout = _schema_of(params.get("TableName", ""))
        key = None
        if layout is not None and operation in WRITES:
            key = _value((params.get("Key") or params.get("Item") or {}).get(layout.hash_key))
        held = self._held.get((layout.logical_name, key)) if layout and key else None
        lines = ledger_entries(operation, params, parsed, estimate=self._estimate, was_in=held)
        if layout is not None and key is not None and not parsed.get("Error"):
            after = params.get("Item") or parsed.get("Attributes")
            self._held[(layout.logical_name, key)] = (
                frozenset() if operation == "DeleteItem" else indexes_holding(layout, after or {})
            )
        for line in lines:
            self._ledger.write(json.dumps(line) + "\n")

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
    ledger = os.environ.get(LEDGER)
    flags = argv[1:]
    engine = flags[flags.index("--dynamodb") + 1] if "--dynamodb" in flags[:-1] else "moto"
    meter = Meter(Path(ledger) if ledger else None, estimate=engine == "moto")
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
