"""`python -m local` as a user runs it: dev tokens, and one-line errors with exit code 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import jwt
import pytest

from local import tokens
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e


def run_local(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "local", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_command_signs_with_the_dev_key() -> None:
    finished = run_local("token", "--sub", "alice", "--tenant", "acme", "--ttl", "120")
    assert finished.returncode == 0, finished.stderr
    public_key = tokens.public_key_pem(tokens.dev_private_key(ROOT / tokens.STATE_DIR))
    claims = jwt.decode(
        finished.stdout.strip(),
        public_key,
        algorithms=[tokens.ALGORITHM],
        audience=tokens.DEV_AUDIENCE,
        issuer=tokens.DEV_ISSUER,
    )
    assert claims["sub"] == "alice"
    assert claims["tenant_id"] == "acme"
    assert claims["exp"] - claims["iat"] == 120


def _assert_one_line_error(finished: subprocess.CompletedProcess, words: str) -> None:
    assert finished.returncode == 2, finished.stderr
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert lines[0].startswith("python -m local: error:")
    assert words in lines[0]


def test_taken_port_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        finished = run_local("--port", str(port))
    _assert_one_line_error(finished, "already in use")


def test_missing_key_file_is_a_one_line_error(tmp_path) -> None:
    finished = run_local("--port", "0", "--jwt-public-key", str(tmp_path / "absent.pem"))
    _assert_one_line_error(finished, "absent.pem")


def test_dynamodb_local_without_java_is_a_one_line_error(tmp_path) -> None:
    # A PATH with nothing on it: no java to be found.
    env = {**os.environ, "PATH": str(tmp_path)}
    finished = run_local("--port", "0", "--dynamodb", "dynamodb-local", env=env)
    _assert_one_line_error(finished, "java")
