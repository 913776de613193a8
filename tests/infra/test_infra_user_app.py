"""An app kept outside `lambdas/`: its code in the code archive, its requirements in a layer."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from components import package

from .conftest import run_stack

pytestmark = pytest.mark.infra

FUNCTION = "aws:lambda/function:Function"
LAYER = "aws:lambda/layerVersion:LayerVersion"


def names(archive: Path) -> set[str]:
    with zipfile.ZipFile(archive) as z:
        return set(z.namelist())


def write_app(directory: Path, requirements: str = "") -> package.AppSource:
    (directory / "my_reports").mkdir(parents=True)
    (directory / "my_reports" / "__init__.py").write_text("from streamer import App\napp = App()\n")
    (directory / "my_reports" / "tests").mkdir()
    (directory / "my_reports" / "tests" / "test_it.py").write_text("")
    (directory / "requirements.txt").write_text(requirements)
    (directory / ".venv" / "lib").mkdir(parents=True)
    (directory / ".venv" / "lib" / "site.py").write_text("")
    return package.AppSource(directory, "my_reports", directory / "requirements.txt")


def test_the_app_is_packaged_next_to_the_runtime(tmp_path: Path) -> None:
    # GIVEN an app package in its own directory
    app = write_app(tmp_path / "app")

    # WHEN the code archive is built with it
    entries = names(package.build_code(tmp_path / "out", app).path)

    # THEN it is at the archive's root next to the runtime and the demo, without its
    # tests, requirements file or virtualenv
    assert {"my_reports/__init__.py", "streamer/__init__.py", "streamer/demo.py"} <= entries
    assert not [n for n in entries if n.startswith(("my_reports/tests", ".venv"))]
    assert "requirements.txt" not in entries


def test_an_app_that_would_replace_the_runtime_is_refused(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app")
    (app.path / "streamer").mkdir()
    (app.path / "streamer" / "__init__.py").write_text("")
    with pytest.raises(ValueError, match="streamer"):
        package.build_code(tmp_path / "out", app)


def test_an_app_module_that_is_not_there_is_refused(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app")
    with pytest.raises(ValueError, match="no such module"):
        package.build_code(tmp_path / "out", package.AppSource(app.path, "elsewhere"))


def _stand_in_dependency_layer(path: Path) -> Path:
    """A dependency layer holding PyJWT 2.10.1, as the real one holds its pins."""
    info = "python/PyJWT-2.10.1.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: PyJWT\nVersion: 2.10.1\n")
        z.writestr(f"{info}/RECORD", f"{info}/METADATA,,\n")
        z.writestr("python/jwt/__init__.py", "")
    return path


def test_the_app_layer_holds_its_requirements_but_not_the_dependency_layers(
    tmp_path: Path,
) -> None:
    # GIVEN an app requiring PyJWT (which the dependency layer holds) and idna
    app = write_app(tmp_path / "app", "pyjwt>=2\nidna\n")
    dependencies = _stand_in_dependency_layer(tmp_path / "layer.zip")

    # WHEN its layer is built (downloads from PyPI)
    layer = package.build_app_layer(tmp_path / "out", app.requirements, dependencies)

    # THEN it holds idna for Lambda, and not PyJWT, which functions get from the other layer
    entries = names(layer.path)
    assert layer.path.name == package.APP_LAYER
    assert {name.split("/")[1] for name in entries} >= {"idna"}
    assert not [n for n in entries if n.startswith(("python/jwt/", "python/PyJWT"))]
    assert all(name.startswith("python/") for name in entries)


@pytest.fixture(scope="module")
def app_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("app-artifacts")
    app = write_app(out / "app")
    stand_ins = {}
    for name in (package.LAYER, package.TRACING_LAYER, package.APP_LAYER):
        module = out / "stand-in" / name / "python" / f"{name.split('.')[0].replace('-', '_')}.py"
        module.parent.mkdir(parents=True)
        module.write_text(f"# stands in for {name}\n")
        path = out / name
        stand_ins[name] = package.Archive(
            path=path, sha256=package.write_zip([(f"python/{module.name}", module)], path)
        )
    package.write_manifest(
        out,
        package.Artifacts(
            code=package.build_code(out, app),
            layer=stand_ins[package.LAYER],
            tracing_layer=stand_ins[package.TRACING_LAYER],
            app_layer=stand_ins[package.APP_LAYER],
            app_module="my_reports",
        ),
    )
    return out


def test_every_function_loads_the_app_with_its_layer(app_artifacts: Path) -> None:
    # GIVEN archives built for the app, and a stack whose runtime.appModule names it
    plan = run_stack("dev", app_artifacts, overrides={"runtime": {"appModule": "my_reports"}})

    # THEN an app layer is made, and every function gets it after the dependency layer and
    # the functions that run handlers are told to load the app
    (app_layer,) = [r for r in plan.of_type(LAYER) if r.inputs["layerName"].endswith("-app")]
    (dependencies,) = [
        r for r in plan.of_type(LAYER) if r.inputs["layerName"].endswith("-dependencies")
    ]
    functions = plan.of_type(FUNCTION)
    assert functions
    for function in functions:
        layers = function.inputs["layers"]
        assert layers.index(dependencies.outputs["arn"]) < layers.index(app_layer.outputs["arn"])
    apps = {
        f.inputs["environment"]["variables"].get("STREAMER_APP")
        for f in functions
        if "STREAMER_APP" in f.inputs["environment"]["variables"]
    }
    assert apps == {"my_reports"}


def test_a_stack_told_to_load_another_app_is_refused(app_artifacts: Path) -> None:
    with pytest.raises(package.ArtifactsMissing, match=r"runtime\.appModule"):
        run_stack("dev", app_artifacts)
