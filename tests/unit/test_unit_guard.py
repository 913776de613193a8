"""The unit layer's guard (tests/unit/conftest.py) catches each kind of I/O."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import urllib.request

import pytest
from moto import mock_aws

from tests.unit.conftest import NotAUnitTest, moto_fixtures_in


def test_opening_a_socket_fails_the_unit_test() -> None:
    with pytest.raises(NotAUnitTest, match="opened a socket"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_listening_on_a_socket_fails_the_unit_test() -> None:
    with socket.socket() as server, pytest.raises(NotAUnitTest, match="opened a socket"):
        server.bind(("127.0.0.1", 0))


def test_an_http_call_fails_the_unit_test_even_through_urllib() -> None:
    with pytest.raises(NotAUnitTest, match="opened a socket"):
        urllib.request.urlopen("http://127.0.0.1:9/", timeout=1)


def test_starting_a_thread_fails_the_unit_test() -> None:
    with pytest.raises(NotAUnitTest, match="started a thread"):
        threading.Thread(target=print).start()


def test_a_timer_is_a_thread_too() -> None:
    with pytest.raises(NotAUnitTest, match="started a thread"):
        threading.Timer(0.1, print).start()


def test_starting_a_subprocess_fails_the_unit_test() -> None:
    with pytest.raises(NotAUnitTest, match="started a subprocess"):
        subprocess.run([sys.executable, "-c", "pass"], check=False)


def test_code_that_catches_every_exception_cannot_hide_it() -> None:
    def swallowing() -> str:
        try:
            threading.Thread(target=print).start()
        except Exception:
            return "swallowed"
        return "ran"

    with pytest.raises(NotAUnitTest):
        swallowing()


def test_moto_fails_the_unit_test() -> None:
    with pytest.raises(NotAUnitTest, match="started moto"), mock_aws():
        pass


def test_asking_for_a_moto_fixture_fails_the_unit_test_before_it_runs() -> None:
    # the setup hook refuses a test whose fixtures (its own included) reach these
    assert moto_fixtures_in(["monkeypatch", "aws_env", "signers"]) == set()
    assert moto_fixtures_in(["configure", "aws", "test_app", "alice"]) == {
        "aws",
        "test_app",
        "alice",
    }
