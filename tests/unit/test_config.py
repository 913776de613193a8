"""The runtime's environment: a malformed value is refused, naming the variable and the value."""

from __future__ import annotations

import pytest

from streamer import config
from streamer.config import ConfigError, Settings


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        (config.ASYNC_THRESHOLD_MS, "abc", "an integer"),
        (config.MAX_ATTEMPTS, "2.5", "an integer"),
        (config.RATE_LIMIT_PER_S, "ten", "an integer"),
        (config.PROGRESS_IMMEDIATE_PERCENT, "ninety", "a number"),
        (config.PROGRESS_IMMEDIATE_PERCENT, "nan", "a number"),
        (config.TRACING, "maybe", "a boolean"),
    ],
    ids=["int", "int-fraction", "int-clamped", "float", "float-nan", "bool"],
)
def test_a_malformed_value_names_the_variable_and_the_value(name, value, kind) -> None:
    # GIVEN an environment where one variable holds a value of the wrong kind
    env = {name: value}

    # WHEN the runtime reads its settings
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)

    # THEN the error says which variable, what it must be, and what it got
    assert str(refused.value).startswith(f"{name} must be {kind}")
    assert str(refused.value).endswith(f"got {value!r}")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[("1", True), ("TRUE", True), ("yes", True), ("on", True)],
        *[("0", False), ("false", False), ("No", False), ("off", False), ("", False)],
    ],
)
def test_a_boolean_takes_the_usual_spellings(value: str, expected: bool) -> None:
    assert Settings.from_env({config.TRACING: value}).tracing is expected


def test_well_formed_numbers_are_read_and_blanks_take_the_defaults() -> None:
    settings = Settings.from_env(
        {
            config.ASYNC_THRESHOLD_MS: " 2500 ",
            config.PROGRESS_IMMEDIATE_PERCENT: "75.5",
            config.MAX_ATTEMPTS: "",
        }
    )
    assert settings.async_threshold_ms == 2500
    assert settings.progress_immediate_percent == 75.5
    assert settings.max_attempts == Settings.max_attempts
