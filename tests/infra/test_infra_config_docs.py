"""Configuration keys: docs/deploying.md lists every key the program reads, and Pulumi.yaml
declares each one its schema can express, with the program's own default.

The keys are taken from the code, not from a second list: the program runs under mocks
while every configuration read is recorded, and the structured keys' fields come from
the settings' dataclasses (the ones `StackSettings.load` fills key by key). A key added
anywhere in the program therefore fails here until it is documented.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path

import pulumi
import pytest
import yaml

from components.plan import PROJECT_ROOT
from components.settings import StackSettings

from .conftest import run_stack

pytestmark = pytest.mark.infra

PROJECT = "streamer"
DOCS = PROJECT_ROOT / "docs" / "deploying.md"


def has_no_default(cell: str) -> bool:
    """A docs default cell for a key the project schema cannot declare without changing
    what the program sees (a declared key without a default is required)."""
    return cell.startswith("-") or cell == "the stack name"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@pytest.fixture(scope="module")
def keys_read(artifacts_dir: Path) -> set[str]:
    """Every `streamer:` key the program reads while planning dev and prod."""
    read: set[str] = set()
    original = pulumi.config.get_config

    def recording(key: str) -> object:
        if key.startswith(f"{PROJECT}:"):
            read.add(key.removeprefix(f"{PROJECT}:"))
        return original(key)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pulumi.config, "get_config", recording)
        for stack in ("dev", "prod"):
            run_stack(stack, artifacts_dir)
    return read


def default_of(field: dataclasses.Field) -> object:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def structured_fields(top: set[str]) -> dict[str, set[str]]:
    """For each key read whose setting is a dataclass (or a map of them), its nested keys."""
    nested: dict[str, set[str]] = {}
    for field in dataclasses.fields(StackSettings):
        key, default = camel(field.name), default_of(field)
        if key not in top:
            continue
        if dataclasses.is_dataclass(default):
            nested[key] = {f"{key}.{camel(f.name)}" for f in dataclasses.fields(default)}
        elif isinstance(default, Mapping) and default:
            (kind,) = {type(value) for value in default.values()}
            if dataclasses.is_dataclass(kind):
                nested[key] = {f"{key}.<name>.{camel(f.name)}" for f in dataclasses.fields(kind)}
    return nested


def documented() -> dict[str, list[str]]:
    """The rows of the Configuration table of docs/deploying.md, by key."""
    text = DOCS.read_text()
    section = text[text.index("## Configuration") :]
    section = section[: section.index("\n## ", 1)]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\| `([^`]+)` \|(.*)\|$", line)
        if match:
            rows[match[1]] = [cell.strip() for cell in match[2].split("|")]
    return rows


def declared() -> dict[str, dict]:
    return yaml.safe_load((PROJECT_ROOT / "Pulumi.yaml").read_text())["config"]


def test_the_program_reads_the_keys_it_is_known_for(keys_read: set[str]) -> None:
    # GIVEN the recorded reads  WHEN they are listed  THEN the well-known keys are among them,
    # so the recording sees the program's configuration at all
    assert {"regions", "jwtIssuer", "processor", "runtime", "apiGatewayLogging"} <= keys_read


def test_the_docs_list_every_key_the_program_reads(keys_read: set[str]) -> None:
    # GIVEN the keys the program reads, structured ones by their fields
    nested = structured_fields(keys_read)
    expected = (keys_read - set(nested)) | set().union(*nested.values())

    # WHEN the Configuration table of docs/deploying.md is read
    rows = documented()

    # THEN it lists exactly those keys: none missing, none the program no longer reads
    assert set(rows) - expected == set(), "documented but not read"
    assert expected - set(rows) == set(), "read but not documented"


def test_pulumi_yaml_declares_every_key_its_schema_can_express(keys_read: set[str]) -> None:
    # GIVEN the keys read, the docs' rows and the project file's declarations
    nested, rows, schema = structured_fields(keys_read), documented(), declared()

    # WHEN the keys left undeclared are picked out
    undeclared = keys_read - set(schema)

    # THEN each is structured (no object type in the schema) or has no default (declaring
    # it would make it required), and nothing declared is a key the program does not read
    assert set(schema) <= keys_read
    for key in undeclared - set(nested):
        assert key in rows, f"{key} is read but not documented"
        assert key in nested or has_no_default(rows[key][1]) or rows[key][0].startswith("map"), key


def test_declared_defaults_are_the_programs_own() -> None:
    # GIVEN the project file's defaults and the settings' field defaults
    defaults = {
        camel(f.name): f.default
        for f in dataclasses.fields(StackSettings)
        if f.default is not dataclasses.MISSING
    }

    # WHEN they are compared  THEN they agree, so the engine's defaults change nothing
    for key, declaration in declared().items():
        if "default" in declaration:
            value = defaults[key]
            assert declaration["default"] == (list(value) if isinstance(value, tuple) else value)


def test_declared_types_match_the_docs() -> None:
    # GIVEN the project file's types  WHEN each is compared to the docs' type column
    words = {"array": "list", "integer": "int", "boolean": "bool", "string": ""}
    rows = documented()

    # THEN the docs describe the same kind of value
    for key, declaration in declared().items():
        assert words[declaration["type"]] in rows[key][0], key
