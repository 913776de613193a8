"""What about a table makes DynamoDB (and so Pulumi) replace it, and which change does.

A table's name, its key schema (hash and range key, with their types) and its local
secondary indexes are fixed when it is created: changing any of them replaces the table,
and the new table starts empty (amazondynamodb/latest/APIReference/API_UpdateTable.html
changes neither; LocalSecondaryIndexes "can only be created at table creation"). A global
secondary index, an attribute, the stream, TTL or encryption change in place.
tests/infra/test_infra_table_keys.py compares each stack's tables with the committed
`tests/infra/table_keys.json` through `replacements`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def key_schema(resource_name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a table's arguments that replace it when they change."""
    types = {a["name"]: a["type"] for a in inputs.get("attributes", [])}
    keys = [inputs["hashKey"], *([inputs["rangeKey"]] if inputs.get("rangeKey") else [])]
    return {
        # Without an explicit name Pulumi derives one from the resource's, so renaming the
        # resource renames (replaces) the table too.
        "resource": resource_name,
        "name": inputs.get("name"),
        "keys": [{"name": key, "type": types[key]} for key in keys],
        "localSecondaryIndexes": sorted(
            (index["name"], index["rangeKey"]) for index in inputs.get("localSecondaryIndexes", [])
        ),
    }


def replacements(
    committed: Mapping[str, Mapping[str, Any]], planned: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Each change from `committed` to `planned` key schemas (by logical table) that would
    replace a table, or remove or add one, in words; empty when none would."""
    found = []
    for table in sorted(set(committed) | set(planned)):
        before, after = committed.get(table), planned.get(table)
        if before is None:
            found.append(f"{table}: a new table, not in the committed key schemas")
        elif after is None:
            found.append(f"{table}: the table would be deleted, and its items with it")
        else:
            for part in sorted(set(before) | set(after)):
                if _plain(before.get(part)) != _plain(after.get(part)):
                    found.append(
                        f"{table}: {part} {before.get(part)!r} -> {after.get(part)!r} "
                        "replaces the table, which starts empty"
                    )
    return found


def _plain(value: Any) -> Any:
    """Lists and tuples alike, as JSON keeps them."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
