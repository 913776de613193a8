"""Build the Lambda archives: `python -m components.package [--out DIR] [--code-only]`.

Writes into DIR (default build/lambda):

- `code.zip`: the runtime, entry points and demo app: the contents of `lambdas/`
  (so `streamer/` is at the archive root), without caches, egg-info or requirements;
- `layer.zip`, the dependency layer every function gets: `lambdas/requirements.txt`
  installed for CPython 3.12 on arm64 Linux (any manylinux wheel the runtime's glibc 2.34
  loads) under `python/`, where Lambda puts layers on
  `sys.path`, without the packages the Lambda Python runtime already provides
  (`RUNTIME_PROVIDED`: the AWS SDK for Python and what it depends on);
- `tracing-layer.zip`, the tracing layer only functions of a stack with `tracing` on
  get: `lambdas/requirements-tracing.txt` (the X-Ray SDK) installed the same way, at
  the versions the dependency layer holds, without what the runtime provides and
  without anything the dependency layer already holds;
- with `--app-path DIR --app MODULE` (an application kept outside `lambdas/`), DIR's
  files go into `code.zip` next to `streamer/`, and with `--app-requirements FILE`
  `app-layer.zip` holds FILE installed the same way, at the versions the dependency
  layer holds and without anything it holds (docs/deploying.md, "Your own app");
- `manifest.json`: the paths with the base64 SHA-256 Lambda compares
  (`code_sha256`), and the app's module when one was given.

The zips are deterministic (sorted entries, fixed timestamps and modes), so a hash
changes only when content does, and only then does `pulumi up` redeploy. The code
archive is stored uncompressed, so its hash is the same on every machine; the layers
are deflated to stay under Lambda's upload limit.
`--code-only` skips the download and writes empty placeholder layers, marked as
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
TRACING_REQUIREMENTS = LAMBDAS_DIR / "requirements-tracing.txt"
DEFAULT_OUT = PROJECT_ROOT / "build" / "lambda"
MANIFEST = "manifest.json"
LAYER = "layer.zip"
TRACING_LAYER = "tracing-layer.zip"
APP_LAYER = "app-layer.zip"

LAMBDA_PYTHON = "3.12"
#: glibc of the Lambda Python 3.12 runtime, Amazon Linux 2023: 2.34 (lambda-runtimes.html
#: lists python3.12 on AL2023; "AL2023 goes up to GLIBC 2.34", aws-lambda-rust-runtime#932).
LAMBDA_GLIBC_MINOR = 34
#: Every platform tag the runtime loads, newest first: a wheel built for glibc 2.x runs on
#: any glibc >= 2.x (PEP 600), down to manylinux_2_17, whose legacy name is manylinux2014
#: (PEP 599). pip matches `--platform` tags literally (it expands no manylinux_2_x tag),
#: so each one is passed.
LAMBDA_PLATFORMS = (
    *(f"manylinux_2_{minor}_aarch64" for minor in range(LAMBDA_GLIBC_MINOR, 16, -1)),
    "manylinux2014_aarch64",
)

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

_MIB = 2**20
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_SKIPPED_DIRS = {"__pycache__", ".pytest_cache", "tests"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo", ".egg-info")
_SKIPPED_FILES = {REQUIREMENTS.name, TRACING_REQUIREMENTS.name}


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
    """The code archive and the two layers, as the Pulumi program deploys them."""

    code: Archive
    #: Every function's dependencies.
    layer: Archive
    #: The X-Ray SDK, for the functions of a stack with tracing on.
    tracing_layer: Archive
    #: The requirements of an app kept outside `lambdas/`, for every function; None without.
    app_layer: Archive | None = None
    #: The module of an app kept outside `lambdas/` (in the code archive); None: none built in.
    app_module: str | None = None

    @classmethod
    def load(cls, directory: str | Path, *, allow_placeholder: bool = False) -> Artifacts:
        """Read `manifest.json` from `directory` (relative paths are from the project root).

        Placeholder layers (`--code-only`) are refused unless `allow_placeholder`, so a
        deployment never ships functions without their dependencies.
        """
        directory = PROJECT_ROOT / directory
        manifest = directory / MANIFEST
        if not manifest.is_file():
            raise ArtifactsMissing(
                f"{manifest} not found: run `python -m components.package` first"
            )
        data = json.loads(manifest.read_text())
        missing = {"code", "layer", "tracing_layer"} - set(data)
        if missing:
            raise ArtifactsMissing(
                f"{manifest} lists no {', '.join(sorted(missing))}: it was written by an "
                "older build; run `python -m components.package` again"
            )

        def archive(entry: dict) -> Archive:
            return Archive(
                path=directory / entry["path"],
                sha256=entry["sha256"],
                placeholder=bool(entry.get("placeholder", False)),
            )

        artifacts = cls(
            code=archive(data["code"]),
            layer=archive(data["layer"]),
            tracing_layer=archive(data["tracing_layer"]),
            app_layer=archive(data["app_layer"]) if "app_layer" in data else None,
            app_module=data.get("app_module"),
        )
        if not allow_placeholder and any(a.placeholder for a in artifacts.archives().values()):
            raise ArtifactsMissing(
                f"{directory} has placeholder layers (--code-only): run "
                "`python -m components.package` to build the real ones before deploying"
            )
        return artifacts

    def archives(self) -> dict[str, Archive]:
        """The archives by their manifest key."""
        archives = {"code": self.code, "layer": self.layer, "tracing_layer": self.tracing_layer}
        if self.app_layer is not None:
            archives["app_layer"] = self.app_layer
        return archives

    def check_app(self, app_module: str) -> None:
        """Refuse to deploy functions told to load `app_module` from archives built for
        another app (`runtime.appModule` must name the app given to the build)."""
        if self.app_module is not None and self.app_module != app_module:
            raise ArtifactsMissing(
                f"the archives hold the app {self.app_module!r} but the stack's "
                f"runtime.appModule is {app_module!r}: set runtime.appModule to "
                f"{self.app_module!r}, or build again with `python -m components.package "
                f"--app-path DIR --app {app_module}`"
            )


@dataclass(frozen=True)
class AppSource:
    """An application kept in its own directory, outside `lambdas/`."""

    #: The directory that holds the app's modules (what goes on `sys.path`).
    path: Path
    #: The module with the `App` named `app`, importable from `path`.
    module: str
    #: The app's own requirements file; None when it needs nothing beyond the runtime's.
    requirements: Path | None = None

    def check(self) -> None:
        """Raise ValueError when the app cannot be what the functions load."""
        if not self.path.is_dir():
            raise ValueError(f"--app-path {self.path}: not a directory")
        relative = Path(*self.module.split("."))
        if not (
            (self.path / relative).with_suffix(".py").is_file()
            or (self.path / relative / "__init__.py").is_file()
        ):
            raise ValueError(f"--app {self.module}: no such module in {self.path}")
        if self.requirements is not None and not self.requirements.is_file():
            raise ValueError(f"--app-requirements {self.requirements}: no such file")


def app_entries(app: AppSource) -> list[tuple[str, Path]]:
    """Archive names and files of the app, at the code archive's root next to `streamer/`,
    without hidden directories, tests, caches or requirements files.

    An app file may not replace a runtime file: the build stops and names the clash.
    """
    app.check()
    runtime = {name.split("/")[0] for name, _ in code_entries()}
    # Hidden directories (.git, .venv) are the developer's, never the function's.
    entries = [
        (name, path)
        for name, path in code_entries(app.path)
        if not any(part.startswith(".") for part in name.split("/"))
    ]
    clashes = sorted({name.split("/")[0] for name, _ in entries} & runtime)
    if clashes:
        raise ValueError(f"--app-path {app.path}: {clashes} would replace the runtime's own")
    return entries


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


def unzipped_size(archive: Path) -> int:
    """Bytes the archive's files take once unpacked (what Lambda's 250 MB limit counts)."""
    with zipfile.ZipFile(archive) as z:
        return sum(info.file_size for info in z.infolist())


def pip_command(requirements: Path, target: Path, *, constraints: Path | None = None) -> list[str]:
    """The pip call that installs `requirements` as Lambda's Python 3.12 on arm64 would need,
    at the versions `constraints` pins, if given."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        *(arg for platform in LAMBDA_PLATFORMS for arg in ("--platform", platform)),
        "--only-binary=:all:",
        "--python-version",
        LAMBDA_PYTHON,
        "--implementation",
        "cp",
        "--target",
        str(target),
        "-r",
        str(requirements),
        *(["-c", str(constraints)] if constraints is not None else []),
    ]


def canonical_name(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): `Python_Dateutil` is
    `python-dateutil`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions(site: Path) -> dict[str, str]:
    """Canonical name and version of every distribution installed in `site`."""
    return {
        canonical_name(distribution.metadata["Name"]): distribution.version
        for distribution in importlib.metadata.distributions(path=[str(site)])
    }


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


def build_code(out_dir: Path, app: AppSource | None = None) -> Archive:
    """Zip `lambdas/`, and the app's directory if given, into `out_dir/code.zip`."""
    path = out_dir / "code.zip"
    entries = code_entries() + (app_entries(app) if app is not None else [])
    return Archive(path=path, sha256=write_zip(entries, path))


def build_layers(
    out_dir: Path,
    requirements: Path = REQUIREMENTS,
    tracing_requirements: Path = TRACING_REQUIREMENTS,
    *,
    exclude: Iterable[str] = RUNTIME_PROVIDED,
) -> tuple[Archive, Archive]:
    """Install both requirement files for Lambda (downloads from the package index) and
    zip them into `out_dir/layer.zip` and `out_dir/tracing-layer.zip`; return both.

    Both leave out the `exclude` distributions (by default what the runtime provides).
    The tracing requirements are installed at the versions the dependency layer holds,
    and what that layer holds is left out of the tracing layer, so no distribution is in
    both and a function with both layers sees one version of each.
    """
    exclude = tuple(exclude)
    with tempfile.TemporaryDirectory(prefix="streamer-layers-") as scratch:
        site = Path(scratch) / "dependencies" / "python"
        tracing_site = Path(scratch) / "tracing" / "python"
        subprocess.run(pip_command(requirements, site), check=True)
        pinned = installed_versions(site)
        constraints = Path(scratch) / "constraints.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pinned.items())))
        subprocess.run(
            pip_command(tracing_requirements, tracing_site, constraints=constraints), check=True
        )
        remove_distributions(site, exclude)
        remove_distributions(tracing_site, {*exclude, *pinned})
        layers = []
        for installed, name in ((site, LAYER), (tracing_site, TRACING_LAYER)):
            path = out_dir / name
            sha256 = write_zip(layer_entries(installed), path, compress=True)
            layers.append(Archive(path=path, sha256=sha256))
        return layers[0], layers[1]


def build_app_layer(
    out_dir: Path,
    requirements: Path,
    dependency_layer: Path,
    *,
    exclude: Iterable[str] = RUNTIME_PROVIDED,
) -> Archive:
    """Install an app's requirements for Lambda into `out_dir/app-layer.zip` (downloads).

    The app's own layer, not the dependency layer: the dependency layer stays the same
    for every app, and what it holds is pinned for the app (its versions are the ones
    the runtime was tested with) and left out, so a function sees one version of each
    distribution. The runtime-provided `exclude` distributions are left out too.
    """
    with tempfile.TemporaryDirectory(prefix="streamer-app-layer-") as scratch:
        held = Path(scratch) / "held"
        with zipfile.ZipFile(dependency_layer) as layer:
            layer.extractall(held)
        pinned = installed_versions(held / "python")
        constraints = Path(scratch) / "constraints.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pinned.items())))
        site = Path(scratch) / "app" / "python"
        subprocess.run(pip_command(requirements, site, constraints=constraints), check=True)
        remove_distributions(site, {*exclude, *pinned})
        path = out_dir / APP_LAYER
        return Archive(path=path, sha256=write_zip(layer_entries(site), path, compress=True))


def build_placeholder_layers(out_dir: Path) -> tuple[Archive, Archive]:
    """Empty layer archives for offline plans; `pulumi up` refuses them."""
    layers = []
    for name in (LAYER, TRACING_LAYER):
        path = out_dir / name
        layers.append(Archive(path=path, sha256=write_zip([], path), placeholder=True))
    return layers[0], layers[1]


def build(
    out_dir: Path = DEFAULT_OUT, *, with_layers: bool = True, app: AppSource | None = None
) -> Artifacts:
    """Build the archives into `out_dir` and write the manifest the program reads."""
    out_dir.mkdir(parents=True, exist_ok=True)
    code = build_code(out_dir, app)
    layer, tracing_layer = (
        build_layers(out_dir) if with_layers else build_placeholder_layers(out_dir)
    )
    app_layer = None
    if app is not None and app.requirements is not None:
        if with_layers:
            app_layer = build_app_layer(out_dir, app.requirements, layer.path)
        else:
            path = out_dir / APP_LAYER
            app_layer = Archive(path=path, sha256=write_zip([], path), placeholder=True)
    artifacts = Artifacts(
        code=code,
        layer=layer,
        tracing_layer=tracing_layer,
        app_layer=app_layer,
        app_module=app.module if app is not None else None,
    )
    return write_manifest(out_dir, artifacts)


def write_manifest(out_dir: Path, artifacts: Artifacts) -> Artifacts:
    """Record the archives (paths relative to `out_dir`) where `Artifacts.load` finds them."""
    manifest = {
        name: {
            "path": archive.path.relative_to(out_dir).as_posix(),
            "sha256": archive.sha256,
            **({"placeholder": True} if archive.placeholder else {}),
        }
        for name, archive in artifacts.archives().items()
    }
    if artifacts.app_module is not None:
        manifest["app_module"] = artifacts.app_module
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return artifacts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.package", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--code-only", action="store_true", help="placeholder layers, no download (plans only)"
    )
    parser.add_argument("--app-path", type=Path, metavar="DIR", help="your app's directory")
    parser.add_argument("--app", metavar="MODULE", help="your app's module, found in DIR")
    parser.add_argument(
        "--app-requirements", type=Path, metavar="FILE", help="your app's own requirements"
    )
    args = parser.parse_args(argv)
    if (args.app_path is None) != (args.app is None):
        parser.error("--app-path and --app go together")
    if args.app_requirements is not None and args.app is None:
        parser.error("--app-requirements needs --app-path and --app")
    app = None
    if args.app is not None:
        app = AppSource(args.app_path.resolve(), args.app, args.app_requirements)
        try:
            app.check()
        except ValueError as error:
            parser.error(str(error))
    artifacts = build(args.out.resolve(), with_layers=not args.code_only, app=app)
    for archive in artifacts.archives().values():
        note = " (placeholder)" if archive.placeholder else ""
        zipped, unzipped = archive.path.stat().st_size, unzipped_size(archive.path)
        print(
            f"{archive.path}  {zipped / _MIB:.1f} MiB zipped, {unzipped / _MIB:.1f} MiB "
            f"unzipped  sha256={archive.sha256}{note}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
