"""The unit layer's rule, enforced: a unit test decides or parses, it does no I/O.

A test under tests/unit that opens a socket, starts a thread, a subprocess or moto
fails with `NotAUnitTest`, naming what it did; such a test belongs in
tests/functional (moto, threads, loopback servers) or a layer above it.
The error is a BaseException so that code under test catching `Exception`
(the router's and the authorizer's last-resort handlers) cannot hide it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest


class NotAUnitTest(BaseException):
    """A unit test reached for the network, a thread or a process."""


def refuse(what: str) -> Callable[..., Any]:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise NotAUnitTest(
            f"a unit test {what}; unit tests are pure (no sockets, threads, subprocesses "
            "or moto): move it to tests/functional"
        )

    return refused


#: The shared fixtures (tests/conftest.py) that run moto: a unit test may not ask for them.
MOTO_FIXTURES = frozenset({"aws", "test_app", "management", "alice"})


def moto_fixtures_in(fixturenames: list[str]) -> set[str]:
    """The moto-backed fixtures a test asks for, directly or through its own fixtures."""
    return MOTO_FIXTURES.intersection(fixturenames)


def pytest_runtest_setup(item: pytest.Item) -> None:
    used = moto_fixtures_in(getattr(item, "fixturenames", []))
    if used:
        raise NotAUnitTest(
            f"a unit test asked for moto ({', '.join(sorted(used))}); move it to tests/functional"
        )


@pytest.fixture(autouse=True)
def no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse sockets, threads, subprocesses and moto for the duration of each unit test."""
    if "moto" in sys.modules:
        from moto.core.models import MockAWS

        monkeypatch.setattr(MockAWS, "start", refuse("started moto"))
    for method in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, method, refuse(f"opened a socket (socket.{method})"))
    monkeypatch.setattr(threading.Thread, "start", refuse("started a thread"))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("started a subprocess"))
