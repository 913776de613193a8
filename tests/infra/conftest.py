"""Fixtures for the Pulumi program under mocks.

Each `plan` fixture runs `__main__.py` once per test module through
`components.plan.run`, which installs fresh mocks, configuration and root stack
for every run (Pulumi's runtime state is global), so modules cannot see each
other's resources. The archives are a real code build and a small stand-in layer,
so the program runs as for `pulumi up` (not a preview).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from components import package, plan
from components.plan import Plan


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifacts")
    stand_in = out / "stand-in" / "python" / "marker.py"
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text("# stands in for the dependency layer in mock runs\n")
    layer_zip = out / "layer.zip"
    layer = package.Archive(
        path=layer_zip, sha256=package.write_zip([("python/marker.py", stand_in)], layer_zip)
    )
    package.write_manifest(out, package.build_code(out), layer)
    return out


def run_stack(stack: str, artifacts_dir: Path, **kwargs) -> Plan:
    return plan.run(stack, artifacts_dir=artifacts_dir, preview=False, **kwargs)


@pytest.fixture(scope="module")
def dev(artifacts_dir: Path) -> Plan:
    return run_stack("dev", artifacts_dir)


@pytest.fixture(scope="module")
def prod(artifacts_dir: Path) -> Plan:
    return run_stack("prod", artifacts_dir)
