"""Stack configuration of the wrong kind: refused naming the key and the value it got."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

from components.settings import ConfigError, config_value

from .conftest import run_stack

pytestmark = pytest.mark.infra


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("runtime", {"rateLimitPerS": "abc"}, "streamer:runtime.rateLimitPerS must be an integer"),
        ("processor", {"batchSize": 2.5}, "streamer:processor.batchSize must be an integer"),
        ("throttle", {"rateLimit": "fast"}, "streamer:throttle.rateLimit must be a number"),
        (
            "functions",
            {"router": {"memoryMb": True}},
            "streamer:functions.router.memoryMb must be an integer",
        ),
    ],
    ids=["int-text", "int-fraction", "float", "int-boolean"],
)
def test_a_nested_value_of_the_wrong_kind_names_the_key_and_the_value(
    artifacts_dir: Path, key: str, value: dict, message: str
) -> None:
    # GIVEN dev with a number that is not one  WHEN the program runs
    # THEN it stops before creating anything, naming the key and what it got
    with pytest.raises(ConfigError) as refused:
        run_stack("dev", artifacts_dir, overrides={key: value})
    given = next(iter(value.values()))
    given = next(iter(given.values())) if isinstance(given, dict) else given
    assert str(refused.value) == f"{message}, got {given!r}"


def test_a_top_level_boolean_of_the_wrong_kind_names_the_key_and_the_value(
    artifacts_dir: Path,
) -> None:
    # GIVEN dev with `tracing` set to something that is not a boolean
    # WHEN the program runs  THEN Pulumi's own check names the key and the value
    with pytest.raises(pulumi.ConfigTypeError, match=r"streamer:tracing.*'maybe'"):
        run_stack("dev", artifacts_dir, overrides={"tracing": "maybe"})


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [
        ("10", 5, 10),
        (10.0, 5, 10),
        ("2.5", 1.0, 2.5),
        (3, 1.0, 3.0),
        (False, True, False),
        ("true", False, True),
        (" FALSE ", True, False),
    ],
)
def test_values_of_the_right_kind_are_read_also_from_text(value, default, expected) -> None:
    read = config_value("runtime.x", value, default)
    assert read == expected and type(read) is type(expected)


@pytest.mark.parametrize(
    ("value", "default", "kind"),
    [
        ("yes please", True, "a boolean (true or false)"),
        (1, False, "a boolean (true or false)"),
        ("1e400", 1.0, "a number"),
        (None, 1, "an integer"),
    ],
)
def test_values_of_the_wrong_kind_are_refused(value, default, kind) -> None:
    with pytest.raises(ConfigError) as refused:
        config_value("runtime.x", value, default)
    assert str(refused.value) == f"streamer:runtime.x must be {kind}, got {value!r}"
