"""The build command: what the archives hold, that they are deterministic, and the layer."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from components import package, plan

from .conftest import run_stack

pytestmark = pytest.mark.infra

ELF_MACHINE_AARCH64 = 183


def names(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as z:
        return z.namelist()


def test_code_archive_holds_the_runtime_and_nothing_else(tmp_path: Path) -> None:
    # GIVEN a code build
    code = package.build_code(tmp_path)

    # WHEN its entries are listed
    entries = names(code.path)

    # THEN the runtime, entry points and demo app are at the root, and nothing that does not
    # run in Lambda is in it
    assert {
        "streamer/__init__.py",
        "streamer/schema.py",
        "streamer/config.py",
        "streamer/entry/__init__.py",
        "streamer/demo.py",
    } <= set(entries)
    for name in entries:
        assert name.startswith("streamer/"), name
        assert "__pycache__" not in name and not name.endswith(".pyc")
        assert ".egg-info" not in name and name != "requirements.txt"
        assert not name.startswith(("tests/", "local/", "client/", "lambdas/"))
    expected = {
        p.relative_to(package.LAMBDAS_DIR).as_posix()
        for p in (package.LAMBDAS_DIR / "streamer").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert expected <= set(entries)


def test_code_archive_imports_from_its_root(tmp_path: Path) -> None:
    # GIVEN the code archive unpacked as Lambda unpacks it (its root on sys.path)
    with zipfile.ZipFile(package.build_code(tmp_path).path) as z:
        z.extractall(tmp_path / "task")

    # WHEN the shared modules are imported from there alone (no site packages)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import streamer.schema, streamer.config, streamer.entry; "
        "print(streamer.schema.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(tmp_path / "task")],
        capture_output=True,
        text=True,
        check=True,
    )

    # THEN they load from the archive
    assert result.stdout.strip().startswith(str(tmp_path / "task"))


def test_archives_are_deterministic_and_follow_content(tmp_path: Path) -> None:
    # GIVEN a copy of lambdas/ built once
    source = tmp_path / "lambdas"
    shutil.copytree(package.LAMBDAS_DIR, source, ignore=shutil.ignore_patterns("__pycache__"))
    first = package.write_zip(package.code_entries(source), tmp_path / "a.zip")

    # WHEN it is built again after touching every file, and after changing one
    for path in source.rglob("*"):
        path.touch()
    again = package.write_zip(package.code_entries(source), tmp_path / "b.zip")
    (source / "streamer" / "config.py").write_text("# changed\n", encoding="utf-8")
    changed = package.write_zip(package.code_entries(source), tmp_path / "c.zip")

    # THEN timestamps change nothing and content changes the hash
    assert again == first
    assert changed != first
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def test_pip_command_targets_lambda_python312_on_arm64(tmp_path: Path) -> None:
    # GIVEN the layer's install command
    command = package.pip_command(package.REQUIREMENTS, tmp_path / "python")

    # WHEN it is read  THEN it installs wheels for CPython 3.12 on manylinux aarch64 only
    text = " ".join(command)
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    assert "--platform manylinux2014_aarch64" in text
    assert "--python-version 3.12" in text
    assert "--implementation cp" in text
    assert "--only-binary=:all:" in command
    assert f"--target {tmp_path / 'python'}" in text
    assert f"-r {package.REQUIREMENTS}" in text


def test_layer_build_installs_the_lambda_requirements_for_arm64(tmp_path: Path) -> None:
    # GIVEN the dependency layer built from lambdas/requirements.txt (downloads from PyPI)
    layer = package.build_layer(tmp_path)

    # WHEN its entries are listed
    entries = names(layer.path)
    top = {name.split("/")[1] for name in entries}

    # THEN the packages are under python/ (Lambda's layer path), compiled parts for aarch64
    assert all(name.startswith("python/") for name in entries)
    assert {"jwt", "pynamodb", "aws_xray_sdk", "cryptography"} <= top
    assert "bin" not in top
    assert not [n for n in entries if "__pycache__" in n]
    with zipfile.ZipFile(layer.path) as z:
        shared = [n for n in entries if n.endswith(".so")]
        assert shared
        for name in shared:
            header = z.read(name)[:20]
            assert int.from_bytes(header[18:20], "little") == ELF_MACHINE_AARCH64, name


def test_deploying_needs_a_real_layer(tmp_path: Path) -> None:
    # GIVEN a code-only build (placeholder layer) and no build at all
    package.build(tmp_path / "code-only", with_layer=False)

    # WHEN the program deploys, previews, or finds nothing built
    # THEN only the preview accepts the placeholder, and the errors say what to run
    with pytest.raises(package.ArtifactsMissing, match=r"python -m components\.package"):
        run_stack("dev", tmp_path / "code-only")
    previewed = plan.run("dev", artifacts_dir=tmp_path / "code-only", preview=True)
    assert previewed.of_type("aws:lambda/function:Function")
    with pytest.raises(package.ArtifactsMissing, match=r"python -m components\.package"):
        package.Artifacts.load(tmp_path / "nothing")
