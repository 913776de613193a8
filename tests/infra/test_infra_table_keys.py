"""No change replaces a table unless the stack allows it: each stack's tables against the
committed key schemas (tests/infra/table_keys.json); indexes and attributes are added in
place; prod's tables are protected from deletion and kept when their resource goes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from components import tables as tables_component
from components.plan import Plan, load_stack_config
from components.table_keys import key_schema, replacements
from streamer.schema import REQUESTS, TABLES, Index

from .conftest import run_stack

pytestmark = pytest.mark.infra

COMMITTED = json.loads((Path(__file__).parent / "table_keys.json").read_text())
TABLE = "aws:dynamodb/table:Table"


def planned(plan: Plan) -> dict[str, dict]:
    return {
        t.name.removeprefix("streamer-tables-"): key_schema(t.name, t.inputs)
        for t in plan.of_type(TABLE)
    }


def allows_replacement(stack: str) -> bool:
    _, config, _ = load_stack_config(stack)
    return config.get("streamer:allowTableReplacement") == "true"


def with_requests(monkeypatch: pytest.MonkeyPatch, **changes: object) -> None:
    """The tables component building the requests table with `changes` to its schema."""
    changed = dataclasses.replace(REQUESTS, **changes)
    monkeypatch.setattr(
        tables_component, "TABLES", tuple(changed if t is REQUESTS else t for t in TABLES)
    )


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_no_stack_replaces_a_table_unless_its_config_allows_it(
    request: pytest.FixtureRequest, stack: str
) -> None:
    # GIVEN the stack's tables as the program makes them
    plan: Plan = request.getfixturevalue(stack)

    # WHEN their names and key schemas are compared with the committed ones
    found = replacements(COMMITTED, planned(plan))

    # THEN nothing would be replaced, or the stack says replacing is intended
    # (streamer:allowTableReplacement; then update table_keys.json in the same change)
    assert found == [] or allows_replacement(stack), found


def test_a_new_range_key_is_caught_as_a_replacement(
    artifacts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the requests table given a range key  WHEN dev is planned
    with_requests(monkeypatch, range_key="created_at")
    found = replacements(COMMITTED, planned(run_stack("dev", artifacts_dir)))

    # THEN the comparison names the table and what changed
    assert len(found) == 1 and found[0].startswith("requests: keys")


def test_a_renamed_or_dropped_table_is_caught() -> None:
    renamed = {**COMMITTED, "connections": {**COMMITTED["connections"], "resource": "other"}}
    assert replacements(COMMITTED, renamed)[0].startswith("connections: resource")
    dropped = {k: v for k, v in COMMITTED.items() if k != "subscriptions"}
    assert replacements(COMMITTED, dropped) == [
        "subscriptions: the table would be deleted, and its items with it"
    ]


def test_a_new_index_and_its_attribute_are_added_in_place(
    artifacts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the requests table with one more global secondary index on a new attribute
    index = Index("by_tenant", hash_key="tenant_id", range_key="created_at", projection="KEYS_ONLY")
    with_requests(monkeypatch, indexes=(*REQUESTS.indexes, index))

    # WHEN dev is planned
    plan = run_stack("dev", artifacts_dir)
    requests = plan.named("streamer-tables-requests").inputs

    # THEN the table carries the index and the attributes it is keyed on, and nothing
    # that would replace the table changed: DynamoDB adds the index to the live table
    assert "by_tenant" in {i["name"] for i in requests["globalSecondaryIndexes"]}
    assert {"tenant_id", "created_at"} <= {a["name"] for a in requests["attributes"]}
    assert replacements(COMMITTED, planned(plan)) == []


def test_prod_tables_are_protected_and_kept(prod: Plan, dev: Plan) -> None:
    # GIVEN prod (deletionProtection) and dev  WHEN their tables' options are read
    # THEN Pulumi refuses to delete or replace prod's and keeps them if their resource
    # goes; dev's are neither
    assert all(t.protect and t.retain_on_delete for t in prod.of_type(TABLE))
    assert not any(t.protect or t.retain_on_delete for t in dev.of_type(TABLE))


def test_an_allowed_replacement_lifts_the_protection_but_keeps_the_old_table(
    artifacts_dir: Path,
) -> None:
    plan = run_stack("prod", artifacts_dir, overrides={"allowTableReplacement": True})
    assert all(not t.protect and t.retain_on_delete for t in plan.of_type(TABLE))
