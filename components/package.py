"""Build the Lambda archives: `python -m components.package [--out DIR] [--code-only]`.

Writes into DIR (default build/lambda):

- `code.zip`: the runtime, entry points and demo app: the contents of `lambdas/`
  (so `streamer/` is at the archive root), without caches, egg-info or requirements;
- `layer.zip`: `lambdas/requirements.txt` installed for CPython 3.12 on arm64 Linux
  under `python/`, where Lambda puts layers on `sys.path`, without the packages the
  Lambda Python runtime already provides (`RUNTIME_PROVIDED`: the AWS SDK for Python
  and what it depends on);
- `manifest.json`: both paths with the base64 SHA-256 Lambda compares (`code_sha256`).

The zips are deterministic (sorted entries, fixed timestamps and modes), so a hash
changes only when content does, and only then does `pulumi up` redeploy. The code
archive is stored uncompressed, so its hash is the same on every machine; the layer
is deflated to stay under Lambda's upload limit.
`--code-only` skips the download and writes an empty placeholder layer, marked as
such in the manifest: enough for offline plans and previews, refused by `pulumi up`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LAMBDAS_DIR = PROJECT_ROOT / "lambdas"
REQUIREMENTS = LAMBDAS_DIR / "requirements.txt"
DEFAULT_OUT = PROJECT_ROOT / "build" / "lambda"
MANIFEST = "manifest.json"

LAMBDA_PYTHON = "3.12"
LAMBDA_PLATFORM = "manylinux2014_aarch64"

#: Distributions every Lambda Python runtime already has on `sys.path`: boto3, botocore and
#: their dependencies. pynamodb and aws-xray-sdk pull botocore in, which would be more than
#: half of the layer (about 20 of 37 MiB unzipped, docs/benchmarks.md) for a copy the
#: runtime holds anyway. The runtime's copy is the one Lambda keeps patched; pynamodb
#: needs botocore >= 1.12, far older than any runtime's.
RUNTIME_PROVIDED = (
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "urllib3",
    "python-dateutil",
    "six",
)

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_SKIPPED_DIRS = {"__pycache__", ".pytest_cache", "tests"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo", ".egg-info")
_SKIPPED_FILES = {"requirements.txt"}


class ArtifactsMissing(FileNotFoundError):
    """The archives were not built; the message says which command builds them."""


@dataclass(frozen=True)
class Archive:
    """One built zip: absolute path and the base64 SHA-256 of its bytes."""

    path: Path
    sha256: str
    placeholder: bool = False


@dataclass(frozen=True)
class Artifacts:
    """The code archive and the dependency layer, as the Pulumi program deploys them."""

    code: Archive
    layer: Archive

    @classmethod
    def load(cls, directory: str | Path, *, allow_placeholder: bool = False) -> Artifacts:
        """Read `manifest.json` from `directory` (relative paths are from the project root).

        A placeholder layer (`--code-only`) is refused unless `allow_placeholder`, so a
        deployment never ships functions without their dependencies.
        """
        directory = PROJECT_ROOT / directory
        manifest = directory / MANIFEST
        if not manifest.is_file():
            raise ArtifactsMissing(
                f"{manifest} not found: run `python -m components.package` first"
            )
        data = json.loads(manifest.read_text())

        def archive(entry: dict) -> Archive:
            return Archive(
                path=directory / entry["path"],
                sha256=entry["sha256"],
                placeholder=bool(entry.get("placeholder", False)),
            )

        artifacts = cls(code=archive(data["code"]), layer=archive(data["layer"]))
        if artifacts.layer.placeholder and not allow_placeholder:
            raise ArtifactsMissing(
                f"{directory} has a placeholder layer (--code-only): run "
                "`python -m components.package` to build the real one before deploying"
            )
        return artifacts


def code_entries(source: Path = LAMBDAS_DIR) -> list[tuple[str, Path]]:
    """Archive names and files of the code archive: what runs in Lambda and nothing else."""
    entries = []
    for path in source.rglob("*"):
        relative = path.relative_to(source)
        if not path.is_file() or _skipped(relative):
            continue
        entries.append((relative.as_posix(), path))
    return sorted(entries)


def _skipped(relative: Path) -> bool:
    return (
        any(part in _SKIPPED_DIRS or part.endswith(_SKIPPED_SUFFIXES) for part in relative.parts)
        or relative.name in _SKIPPED_FILES
    )


def write_zip(entries: Iterable[tuple[str, Path]], out: Path, *, compress: bool = False) -> str:
    """Write a deterministic zip of `(name, file)` entries; return its base64 SHA-256.

    Stored (uncompressed) entries make the bytes, and so the hash, depend on nothing but
    the content: the same on every machine. `compress` deflates instead, for archives
    that would otherwise pass Lambda's 50 MB upload limit; their bytes then also depend
    on the zlib version that built them.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as archive:
        for name, path in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            info.create_system = 3  # Unix, so the mode below is honoured
            info.external_attr = 0o100644 << 16
            archive.writestr(info, path.read_bytes())
    return base64.b64encode(hashlib.sha256(out.read_bytes()).digest()).decode()


def pip_command(requirements: Path, target: Path) -> list[str]:
    """The pip call that installs `requirements` as Lambda's Python 3.12 on arm64 would need."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--platform",
        LAMBDA_PLATFORM,
        "--only-binary=:all:",
        "--python-version",
        LAMBDA_PYTHON,
        "--implementation",
        "cp",
        "--target",
        str(target),
        "-r",
        str(requirements),
    ]


def canonical_name(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): `Python_Dateutil` is
    `python-dateutil`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def remove_distributions(site: Path, names: Iterable[str]) -> list[str]:
    """Delete the installed distributions named `names` from `site`; return those removed.

    Each distribution's files are the ones its `RECORD` lists (what pip would
    uninstall), so a package never loses a file that another one installed.
    """
    wanted = {canonical_name(name) for name in names}
    removed = []
    for distribution in importlib.metadata.distributions(path=[str(site)]):
        name = canonical_name(distribution.metadata["Name"])
        if name not in wanted:
            continue
        for file in distribution.files or ():
            Path(distribution.locate_file(file)).unlink(missing_ok=True)
        removed.append(name)
    # RECORD lists files only: drop the directories they leave empty.
    for directory in sorted((p for p in site.rglob("*") if p.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return sorted(removed)


def layer_entries(site: Path) -> list[tuple[str, Path]]:
    """Archive names (under `python/`) of an installed dependency tree, without scripts
    (`bin/`) or bytecode caches; packages are otherwise taken whole."""
    return [
        (f"python/{relative.as_posix()}", path)
        for path in site.rglob("*")
        if path.is_file()
        and (relative := path.relative_to(site)).parts[0] != "bin"
        and "__pycache__" not in relative.parts
        and path.suffix != ".pyc"
    ]


def build_code(out_dir: Path) -> Archive:
    """Zip `lambdas/` into `out_dir/code.zip`."""
    path = out_dir / "code.zip"
    return Archive(path=path, sha256=write_zip(code_entries(), path))


def build_layer(
    out_dir: Path,
    requirements: Path = REQUIREMENTS,
    *,
    exclude: Iterable[str] = RUNTIME_PROVIDED,
) -> Archive:
    """Install `requirements` for Lambda (downloads from the package index) and zip them,
    leaving out the `exclude` distributions (by default what the runtime provides)."""
    path = out_dir / "layer.zip"
    with tempfile.TemporaryDirectory(prefix="streamer-layer-") as scratch:
        site = Path(scratch) / "python"
        subprocess.run(pip_command(requirements, site), check=True)
        remove_distributions(site, exclude)
        return Archive(path=path, sha256=write_zip(layer_entries(site), path, compress=True))


def build_placeholder_layer(out_dir: Path) -> Archive:
    """An empty layer archive for offline plans; `pulumi up` refuses it."""
    path = out_dir / "layer.zip"
    return Archive(path=path, sha256=write_zip([], path), placeholder=True)


def build(out_dir: Path = DEFAULT_OUT, *, with_layer: bool = True) -> Artifacts:
    """Build both archives into `out_dir` and write the manifest the program reads."""
    out_dir.mkdir(parents=True, exist_ok=True)
    code = build_code(out_dir)
    layer = build_layer(out_dir) if with_layer else build_placeholder_layer(out_dir)
    return write_manifest(out_dir, code, layer)


def write_manifest(out_dir: Path, code: Archive, layer: Archive) -> Artifacts:
    """Record both archives (paths relative to `out_dir`) where `Artifacts.load` finds them."""
    manifest = {
        name: {
            "path": archive.path.relative_to(out_dir).as_posix(),
            "sha256": archive.sha256,
            **({"placeholder": True} if archive.placeholder else {}),
        }
        for name, archive in (("code", code), ("layer", layer))
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return Artifacts(code=code, layer=layer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.package", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--code-only", action="store_true", help="placeholder layer, no download (plans only)"
    )
    args = parser.parse_args(argv)
    artifacts = build(args.out.resolve(), with_layer=not args.code_only)
    for archive in (artifacts.code, artifacts.layer):
        note = " (placeholder)" if archive.placeholder else ""
        print(f"{archive.path}  sha256={archive.sha256}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
