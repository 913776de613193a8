"""The unit layer's rule, enforced: a unit test decides or parses, it does no I/O.

A test under tests/unit that opens a socket, starts a thread or a subprocess
fails with `NotAUnitTest`, naming what it did; such a test belongs in
tests/functional (moto, threads, loopback servers) or a layer above it.
The error is a BaseException so that code under test catching `Exception`
(the router's and the authorizer's last-resort handlers) cannot hide it.
"""

from __future__ import annotations

import socket
import subprocess
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


@pytest.fixture(autouse=True)
def no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse sockets, threads and subprocesses for the duration of each unit test."""
    for method in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, method, refuse(f"opened a socket (socket.{method})"))
    monkeypatch.setattr(threading.Thread, "start", refuse("started a thread"))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("started a subprocess"))
