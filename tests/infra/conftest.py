"""Fixtures for the Pulumi program under mocks.

Each `plan` fixture runs `__main__.py` once per test module through
`components.plan.run`, which installs fresh mocks, configuration and root stack
for every run (Pulumi's runtime state is global), so modules cannot see each
other's resources. The archives are a real code build and two small stand-in layers
(different content, so different hashes), so the program runs as for `pulumi up` (not
a preview).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from components import package, plan
from components.plan import Plan


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifacts")
    layers = {}
    for archive, module in ((package.LAYER, "marker"), (package.TRACING_LAYER, "tracing_marker")):
        stand_in = out / "stand-in" / archive / "python" / f"{module}.py"
        stand_in.parent.mkdir(parents=True)
        stand_in.write_text(f"# stands in for {archive} in mock runs\n")
        path = out / archive
        layers[archive] = package.Archive(
            path=path, sha256=package.write_zip([(f"python/{module}.py", stand_in)], path)
        )
    package.write_manifest(
        out,
        package.Artifacts(
            code=package.build_code(out),
            layer=layers[package.LAYER],
            tracing_layer=layers[package.TRACING_LAYER],
        ),
    )
    return out


def run_stack(stack: str, artifacts_dir: Path, **kwargs) -> Plan:
    return plan.run(stack, artifacts_dir=artifacts_dir, preview=False, **kwargs)


@pytest.fixture(scope="module")
def dev(artifacts_dir: Path) -> Plan:
    return run_stack("dev", artifacts_dir)


@pytest.fixture(scope="module")
def staging(artifacts_dir: Path) -> Plan:
    return run_stack("staging", artifacts_dir)


@pytest.fixture(scope="module")
def prod(artifacts_dir: Path) -> Plan:
    return run_stack("prod", artifacts_dir)
