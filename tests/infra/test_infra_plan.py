"""The offline plan command: text and JSON resource trees that are stable to diff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components import plan

pytestmark = pytest.mark.infra


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert plan.main(argv) == 0
    return capsys.readouterr().out


def test_text_plan_prints_the_tree_and_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no built archives (the plan builds the code itself)
    # WHEN the prod plan is printed as text
    text = run_main(["--stack", "prod", "--artifacts", str(tmp_path)], capsys)
    lines = text.splitlines()

    # THEN it names the stack, nests children under their parents, and lists the outputs
    assert lines[0] == "stack prod of streamer: 356 resources"
    component = lines.index("streamer:components:RegionalStack  streamer-eu-west-1")
    assert lines[component + 1].startswith("  aws:")
    assert any(
        line.startswith("    aws:lambda/function:Function  streamer-eu-west-1-router-function")
        and 'handler="streamer.entry.router.handler"' in line
        for line in lines
    )
    assert "outputs:" in lines
    assert any(line.startswith("  websocketUrls = ") for line in lines)


def test_json_plan_is_complete_and_stable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the dev plan printed as JSON twice
    argv = ["--stack", "dev", "--json", "--artifacts", str(tmp_path)]
    first = run_main(argv, capsys)
    second = run_main(argv, capsys)

    # WHEN it is parsed
    data = json.loads(first)

    # THEN every resource has its type, name, parent, region and inputs, and runs agree
    assert first == second
    assert (data["project"], data["stack"]) == ("streamer", "dev")
    assert len(data["resources"]) == 158
    for resource in data["resources"]:
        assert {"type", "name", "parent", "region", "inputs", "depends_on"} <= set(resource)
    by_name = {r["name"]: r for r in data["resources"]}
    assert by_name["streamer-us-east-1-router-function"]["parent"] == "streamer-us-east-1-router"
    assert set(data["outputs"]) == {
        "websocketUrls",
        "httpUrls",
        "managementEndpoints",
        "tableNames",
        "alarmActions",
        "notificationTopics",
        "eventBuses",
    }


def test_stack_config_reads_encrypted_values_as_secret(tmp_path: Path) -> None:
    # GIVEN a project whose stack file holds an encrypted value
    (tmp_path / "Pulumi.yaml").write_text("name: streamer\nruntime: python\n")
    (tmp_path / "Pulumi.x.yaml").write_text(
        "config:\n"
        "  streamer:regions: [us-east-1]\n"
        "  streamer:jwtPublicKey:\n    secure: v1:abc\n"
        "  streamer:tracing: true\n"
    )

    # WHEN the plan reads it
    project, config, secret_keys = plan.load_stack_config("x", tmp_path)

    # THEN structured values are JSON as the engine passes them and the secret stays unread
    assert project == "streamer"
    assert config == {
        "streamer:regions": '["us-east-1"]',
        "streamer:jwtPublicKey": plan.SECRET,
        "streamer:tracing": "true",
    }
    assert secret_keys == ["streamer:jwtPublicKey"]


def test_unknown_stack_is_refused(tmp_path: Path) -> None:
    # GIVEN no Pulumi.nope.yaml  WHEN it is planned  THEN the error names the file
    with pytest.raises(FileNotFoundError, match=r"Pulumi\.nope\.yaml"):
        plan.run("nope", artifacts_dir=tmp_path)
