"""A malformed DynamoDB call budget in the environment is a configuration error, like any setting.

Every other `STREAMER_` variable with a value of the wrong kind stops the function with
`config.ConfigError` naming the variable and the value; the budget's do the same rather than
quietly running with another budget than the one configured.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer import aws, config


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (aws.CONNECT_TIMEOUT_S, "soon"),
        (aws.READ_TIMEOUT_S, "two seconds"),
        (aws.READ_TIMEOUT_S, "nan"),
        (aws.READ_TIMEOUT_S, "-1"),
        (aws.MAX_ATTEMPTS, "0"),
        (aws.MAX_ATTEMPTS, "2.5"),
    ],
)
def test_a_malformed_budget_is_a_config_error_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)

    with pytest.raises(config.ConfigError, match=f"{name}.*{value!r}"):
        aws.configured_budget(aws.ROUTER)


def test_a_well_formed_budget_changes_the_default(monkeypatch):
    monkeypatch.setenv(aws.CONNECT_TIMEOUT_S, " 0.5 ")
    monkeypatch.setenv(aws.MAX_ATTEMPTS, "3")

    assert aws.configured_budget(aws.ROUTER) == aws.CallBudget(
        connect_timeout_s=0.5, read_timeout_s=aws.ROUTER.read_timeout_s, max_attempts=3
    )


def test_the_readme_documents_every_budget_variable():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    configuration = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for name in aws.ENVIRONMENT:
        assert f"| `{name}` |" in configuration, name
