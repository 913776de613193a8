"""An app kept in its own directory, packaged with the runtime and run by the local stack."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from components import package
from tests.e2e.conftest import ROOT, start_stack
from tests.e2e.wire import ask, open_socket, run, run_async_request

pytestmark = pytest.mark.e2e

APP = """
from streamer import App, Progress, Request

from wording import shout

app = App()


@app.action("shout", estimated_duration=0.01)
def loud(request: Request, progress: Progress) -> dict:
    return {"text": shout(request.payload["text"])}


@app.action("count_slowly", estimated_duration=60)
def count_slowly(request: Request, progress: Progress) -> dict:
    to = request.payload["to"]
    for done in range(1, to + 1):
        progress.report(100 * done // to, f"{done} of {to}")
    return {"counted": to}
"""


def write_app(directory: Path) -> Path:
    """A two-module app with its own (empty) requirements file, outside `lambdas/`."""
    directory.mkdir()
    (directory / "my_reports.py").write_text(textwrap.dedent(APP))
    (directory / "wording.py").write_text("def shout(text: str) -> str:\n    return text.upper()\n")
    (directory / "requirements.txt").write_text("")
    return directory


def test_an_app_from_its_own_directory_is_packaged_and_runs_locally(tmp_path: Path) -> None:
    # GIVEN an app in a directory of its own, packaged with the runtime
    app = package.AppSource(write_app(tmp_path / "my-app"), "my_reports")
    code = package.build_code(tmp_path / "build", app)
    with zipfile.ZipFile(code.path) as archive:
        entries = set(archive.namelist())
        archive.extractall(tmp_path / "code")
    assert {"my_reports.py", "wording.py", "streamer/__init__.py", "streamer/demo.py"} <= entries
    assert "requirements.txt" not in entries

    # WHEN the local stack runs the packaged code with the app's module
    with start_stack(
        tmp_path / "stack", "--app-path", str(tmp_path / "code"), "--app", "my_reports"
    ) as stack:

        async def scenario() -> tuple[dict, dict, list[dict]]:
            async with open_socket(stack.url(stack.dev_token)) as socket:
                sync = await ask(
                    socket, {"action": "shout", "id": "s-1", "payload": {"text": "hello"}}
                )
                acknowledgment, updates = await run_async_request(socket, "count_slowly", {"to": 3})
                return sync, acknowledgment, updates

        sync, acknowledgment, updates = run(scenario())

    # THEN the sync action answers at once and the async one completes with its result
    assert sync["type"] == "response" and sync["data"] == {"text": "HELLO"}
    assert acknowledgment["status"] == "QUEUED"
    assert updates[-1]["type"] == "complete"
    assert updates[-1]["result"] == {"counted": 3}


def test_the_local_stack_refuses_an_app_it_cannot_find(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "local", "--port", "0", "--app-path", str(tmp_path)]
    finished = subprocess.run(
        [*command, "--app", "not_there"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 2
    assert "--app not_there: no such module" in finished.stderr
