"""The build command: what the archives hold, that they are deterministic, and the layers."""

from __future__ import annotations

import base64
import hashlib
import json
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
#: What the runtime-provided distributions put at the top of site-packages.
RUNTIME_PROVIDED_IMPORTS = {
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "urllib3",
    "dateutil",
    "six.py",
}


def names(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as z:
        return z.namelist()


def top_level(entries: list[str]) -> set[str]:
    """What a layer puts at the top of site-packages (its entries are under `python/`)."""
    return {name.split("/")[1] for name in entries}


def distributions(entries: list[str]) -> set[str]:
    """The canonical names of the distributions a layer holds, from their dist-info."""
    return {
        package.canonical_name(top.split("-")[0])
        for top in top_level(entries)
        if top.endswith(".dist-info")
    }


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
        assert ".egg-info" not in name
        assert name not in ("requirements.txt", "requirements-tracing.txt")
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

    # WHEN it is read  THEN it installs wheels for CPython 3.12 on manylinux aarch64 only,
    # accepting every platform tag the runtime's glibc (2.34) loads
    text = " ".join(command)
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    platforms = [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"]
    assert platforms == list(package.LAMBDA_PLATFORMS)
    assert "--python-version 3.12" in text
    assert "--implementation cp" in text
    assert "--only-binary=:all:" in command
    assert f"--target {tmp_path / 'python'}" in text
    assert f"-r {package.REQUIREMENTS}" in text
    assert "-c" not in command


def test_platform_tags_are_every_manylinux_the_runtime_glibc_loads() -> None:
    # GIVEN the Lambda Python 3.12 runtime: Amazon Linux 2023, glibc 2.34, arm64
    # WHEN the layer's platform tags are listed
    tags = package.LAMBDA_PLATFORMS

    # THEN they are manylinux_2_34 down to manylinux_2_17 and its legacy alias
    # manylinux2014, newest first, all aarch64, and nothing newer than the runtime's glibc
    assert tags[0] == "manylinux_2_34_aarch64"
    assert {f"manylinux_2_{minor}_aarch64" for minor in range(17, 35)} | {
        "manylinux2014_aarch64"
    } == set(tags)
    assert len(tags) == len(set(tags))
    assert "manylinux_2_35_aarch64" not in tags


def _wheel(index: Path, name: str, version: str, platform: str) -> Path:
    """A minimal binary wheel for CPython 3.12 on `platform`, as a package index serves it."""
    tag = f"cp312-cp312-{platform}"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n"
        ),
    }
    record = [
        f"{path},sha256="
        + base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        + f",{len(text.encode())}"
        for path, text in files.items()
    ]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    path = index / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as z:
        for member, text in files.items():
            z.writestr(member, text)
    return path


def test_the_layer_install_picks_a_newer_manylinux_wheel_the_runtime_loads(tmp_path: Path) -> None:
    # GIVEN a local index whose dependency ships only a manylinux_2_28 wheel (glibc 2.28,
    # loadable on the runtime's 2.34) and, in a later version, only a manylinux_2_35 one
    index = tmp_path / "index"
    index.mkdir()
    _wheel(index, "tinyglibc", "1.0", "manylinux_2_28_aarch64")
    _wheel(index, "tinyglibc", "2.0", "manylinux_2_35_aarch64")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tinyglibc\n")

    # WHEN the layer's pip command installs it from that index (no network)
    command = package.pip_command(requirements, tmp_path / "python")
    subprocess.run([*command, "--no-index", "--find-links", str(index)], check=True)

    # THEN it installs the newest version the runtime can load: the manylinux_2_28 one
    installed = package.installed_versions(tmp_path / "python")
    assert installed == {"tinyglibc": "1.0"}
    assert (tmp_path / "python" / "tinyglibc" / "__init__.py").read_text() == "VERSION = '1.0'\n"


def test_pip_command_pins_what_constraints_name(tmp_path: Path) -> None:
    # GIVEN the tracing layer's install command, constrained to the dependency layer's versions
    constraints = tmp_path / "constraints.txt"
    command = package.pip_command(
        package.TRACING_REQUIREMENTS, tmp_path / "python", constraints=constraints
    )

    # WHEN it is read  THEN it installs the tracing requirements within those versions
    text = " ".join(command)
    assert f"-r {package.TRACING_REQUIREMENTS}" in text
    assert f"-c {constraints}" in text


def _assert_lambda_layer(entries: list[str], archive: Path) -> None:
    """Packages under python/ (Lambda's layer path), compiled parts for aarch64, no scripts,
    no bytecode, and nothing the Lambda runtime provides."""
    top = top_level(entries)
    assert all(name.startswith("python/") for name in entries)
    assert "bin" not in top
    assert not top & RUNTIME_PROVIDED_IMPORTS
    assert not distributions(entries) & set(package.RUNTIME_PROVIDED)
    assert not [n for n in entries if "__pycache__" in n]
    with zipfile.ZipFile(archive) as z:
        shared = [n for n in entries if n.endswith(".so")]
        assert shared
        for name in shared:
            header = z.read(name)[:20]
            assert int.from_bytes(header[18:20], "little") == ELF_MACHINE_AARCH64, name


def test_layers_split_the_lambda_requirements_for_arm64(tmp_path: Path) -> None:
    # GIVEN both layers built from lambdas/requirements.txt and lambdas/requirements-tracing.txt
    # (downloads from PyPI)
    layer, tracing = package.build_layers(tmp_path)

    # WHEN their entries are listed
    entries, tracing_entries = names(layer.path), names(tracing.path)

    # THEN both are Lambda layers for arm64 without the AWS SDK the runtime provides; the
    # dependency layer holds what every function imports and not the X-Ray SDK, which only
    # the tracing layer holds, and no package is in both
    _assert_lambda_layer(entries, layer.path)
    _assert_lambda_layer(tracing_entries, tracing.path)
    assert {"jwt", "pynamodb", "cryptography"} <= top_level(entries)
    assert {"pynamodb", "pyjwt", "cryptography"} <= distributions(entries)
    assert not {"aws-xray-sdk", "wrapt"} & distributions(entries)
    assert not {"aws_xray_sdk", "wrapt"} & top_level(entries)
    assert distributions(tracing_entries) == {"aws-xray-sdk", "wrapt"}
    assert {"aws_xray_sdk", "wrapt"} <= top_level(tracing_entries)
    assert not top_level(entries) & top_level(tracing_entries)
    assert (layer.path.name, tracing.path.name) == (package.LAYER, package.TRACING_LAYER)


def test_what_the_dependency_layer_holds_is_left_out_of_the_tracing_layer(tmp_path: Path) -> None:
    # GIVEN tracing requirements that share a distribution with the dependency layer's
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pyjwt>=2.10,<3\n")
    tracing_requirements = tmp_path / "requirements-tracing.txt"
    tracing_requirements.write_text("pyjwt\nwrapt\n")

    # WHEN both layers are built, nothing excluded as runtime-provided (downloads from PyPI)
    layer, tracing = package.build_layers(
        tmp_path / "out", requirements, tracing_requirements, exclude=()
    )

    # THEN the shared distribution is in the dependency layer only
    assert distributions(names(layer.path)) == {"pyjwt"}
    assert distributions(names(tracing.path)) == {"wrapt"}


def _install_fake(site: Path, name: str, files: dict[str, str]) -> None:
    """Lay out a distribution as pip installs it: its files and a dist-info with RECORD."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    for relative, text in files.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_text(text)
    listed = [*files, f"{info.name}/METADATA", f"{info.name}/RECORD"]
    (info / "RECORD").write_text("".join(f"{path},,\n" for path in listed))


def test_runtime_provided_distributions_are_removed_by_their_record(tmp_path: Path) -> None:
    # GIVEN an installed tree with botocore, python-dateutil (its import name differs), and a
    # package of ours sharing nothing with them
    site = tmp_path / "python"
    _install_fake(site, "botocore", {"botocore/__init__.py": "", "botocore/data/x.json": "{}"})
    _install_fake(site, "python-dateutil", {"dateutil/__init__.py": ""})
    _install_fake(site, "pynamodb", {"pynamodb/__init__.py": ""})

    # WHEN the runtime-provided distributions are removed
    removed = package.remove_distributions(site, package.RUNTIME_PROVIDED)

    # THEN they are gone with their dist-info and empty directories, and ours is whole
    assert removed == ["botocore", "python-dateutil"]
    remaining = sorted(p.relative_to(site).as_posix() for p in site.rglob("*"))
    assert remaining == [
        "pynamodb",
        "pynamodb-1.0.dist-info",
        "pynamodb-1.0.dist-info/METADATA",
        "pynamodb-1.0.dist-info/RECORD",
        "pynamodb/__init__.py",
    ]


def test_deploying_needs_real_layers(tmp_path: Path) -> None:
    # GIVEN a code-only build (placeholder layers) and no build at all
    built = package.build(tmp_path / "code-only", with_layers=False)
    assert built.layer.placeholder and built.tracing_layer.placeholder

    # WHEN the program deploys, previews, or finds nothing built
    # THEN only the preview accepts the placeholder, and the errors say what to run
    with pytest.raises(package.ArtifactsMissing, match=r"python -m components\.package"):
        run_stack("dev", tmp_path / "code-only")
    previewed = plan.run("dev", artifacts_dir=tmp_path / "code-only", preview=True)
    assert previewed.of_type("aws:lambda/function:Function")
    with pytest.raises(package.ArtifactsMissing, match=r"python -m components\.package"):
        package.Artifacts.load(tmp_path / "nothing")


def test_a_manifest_without_the_tracing_layer_asks_for_a_new_build(tmp_path: Path) -> None:
    # GIVEN a build whose manifest predates the tracing layer
    package.build(tmp_path, with_layers=False)
    manifest = json.loads((tmp_path / package.MANIFEST).read_text())
    del manifest["tracing_layer"]
    (tmp_path / package.MANIFEST).write_text(json.dumps(manifest))

    # WHEN the program loads it  THEN the error names the missing archive and the command
    with pytest.raises(
        package.ArtifactsMissing, match=r"tracing_layer.*python -m components\.package"
    ):
        package.Artifacts.load(tmp_path, allow_placeholder=True)
