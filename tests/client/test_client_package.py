"""`pip install ./client` in a fresh virtualenv: the library, the command line, one dependency.

The install resolves `websockets` through pip's configured index, as a user's
would; it builds from a copy of client/ so that setuptools' build files never
land in the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

from client import __version__

CLIENT = Path(__file__).resolve().parents[2] / "client"
PIP_TIMEOUT_S = 600
# The fresh virtualenv must not see this repository's packages.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_pip_install_of_the_client_folder_gives_the_library_and_the_command(
    tmp_path: Path,
) -> None:
    # GIVEN a fresh virtualenv and a copy of client/ without the JS client
    source = tmp_path / "client"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("js", "__pycache__"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # WHEN `pip install ./client` runs there
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", str(source)],
        check=True,
        timeout=PIP_TIMEOUT_S,
        cwd=tmp_path,
        env=CLEAN_ENV,
    )
    # THEN `streamer-client --version` says the package's version
    shown = subprocess.run(
        [env_dir / "bin" / "streamer-client", "--version"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=CLEAN_ENV,
    )
    assert shown.stdout.strip() == f"streamer-client {__version__}"
    # AND the library imports outside the repository, with the vectors shipped beside it
    probe = (
        "import json, importlib.metadata as m, pathlib, client, client.conversation as c;"
        "vectors = sorted(pathlib.Path(c.__file__).parent.glob('vectors/*.json'));"
        "print(json.dumps({'version': client.__version__, 'file': client.__file__,"
        " 'vectors': len(vectors), 'requires': m.requires('streamer-client')}))"
    )
    found = json.loads(
        subprocess.run(
            [python, "-c", probe],
            capture_output=True,
            text=True,
            check=True,
            cwd=env_dir,
            env=CLEAN_ENV,
        ).stdout
    )
    assert found["version"] == __version__
    assert found["file"].startswith(str(env_dir))
    assert found["vectors"] == len(list((CLIENT / "conversation" / "vectors").glob("*.json")))
    # AND websockets is its only dependency
    assert [r.split(">")[0].split("=")[0].strip() for r in found["requires"]] == ["websockets"]
