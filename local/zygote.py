"""The process every execution environment is forked from, its libraries already imported.

A worker process started from nothing spends most of its cold start loading
the interpreter and the libraries every function shares (botocore, PynamoDB,
PyJWT, cryptography), which on a small shared machine made each cold start
cost most of a second of CPU, and seconds under load, so a burst of
connections outwaited the handshake. The zygote imports those libraries once,
and the modules the stack names (the catalog's entry points: the stack passes
them), and forks one child per environment the stack asks for. What a cold
start still does in each new environment: resolve its handler, and on its
first invocation build the runtime (settings, clients) and import the
application's module (`STREAMER_APP`), the user's code. Nothing the zygote
imported has run a handler, so every environment starts with fresh state.

The stack talks to it over a Unix socket (`control`): each request carries
the environment's end of a socket pair (`socket.send_fds`), its setup and
the stack's environment variables at that moment; the answer is the child's
pid. The zygote keeps a copy of that end, and when the child exits, writes
`("exited", returncode)` on it, so the stack learns how its environment ended
(a negative code: killed by that signal) without being its parent. The
zygote ends when the stack does (its control socket closes).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import socket
import struct
import sys
import threading

from local.channel import Channel

#: What the zygote imports before forking: the libraries of the dependency layer and the
#: runtime-provided SDK (lambdas/requirements.txt), and the stdlib modules the runtime uses.
PRELOAD = (
    "asyncio",
    "concurrent.futures",
    "json",
    "logging",
    "botocore.session",
    "botocore.client",
    "botocore.handlers",
    "pynamodb.models",
    "pynamodb.attributes",
    "jwt",
    "cryptography.hazmat.primitives.asymmetric.rsa",
    "cryptography.hazmat.primitives.asymmetric.ec",
    "local.channel",
    "local.functions",
    "local.iam",
    "local.wiring",
    "local.worker",
)
#: The length prefix of a fork request, and of the pid that answers it.
_SIZE = struct.Struct("!I")
#: What the zygote writes on an environment's socket when its process has exited.
EXITED = "exited"


def _receive_exactly(control: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = control.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


class _Children:
    """The environments' sockets, kept to report each one's exit on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: dict[int, int] = {}
        #: Children reaped before `add` knew them (they exited at once).
        self._early: dict[int, int] = {}
        self._any = threading.Condition(self._lock)

    def add(self, pid: int, descriptor: int) -> None:
        with self._lock:
            status = self._early.pop(pid, None)
            if status is None:
                self._sockets[pid] = descriptor
                self._any.notify()
                return
        _report(descriptor, status)

    def descriptors(self) -> list[int]:
        return list(self._sockets.values())

    def reap(self) -> None:
        """Forever: wait for any child to exit and report how on its socket."""
        while True:
            with self._lock:
                while not self._sockets:
                    self._any.wait(0.5)
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                continue
            with self._lock:
                descriptor = self._sockets.pop(pid, None)
                if descriptor is None:
                    self._early[pid] = status
            if descriptor is not None:
                _report(descriptor, status)


def _report(descriptor: int, status: int) -> None:
    channel = Channel(socket.socket(fileno=descriptor))
    with contextlib.suppress(OSError):
        channel.send((EXITED, os.waitstatus_to_exitcode(status)))
    channel.close()


def _fork(children: _Children, control: socket.socket, request: dict, descriptor: int) -> int:
    pid = os.fork()
    if pid:
        children.add(pid, descriptor)
        return pid
    # The child: only its own socket stays open.
    try:
        control.close()
        for other in children.descriptors():
            with contextlib.suppress(OSError):
                os.close(other)
        os.environ.clear()
        os.environ.update(request["environ"])
        sys.path[:] = request["setup"]["sys_path"]
        from local.worker import main

        main(descriptor, request["setup"])
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(1)
    finally:
        os._exit(0)


def serve(control: socket.socket) -> None:
    """Fork an environment for each request on `control` until the stack is gone."""
    import json

    children = _Children()
    threading.Thread(target=children.reap, daemon=True).start()
    while True:
        try:
            header, descriptors, _, _ = socket.recv_fds(control, _SIZE.size, 1)
            if len(header) < _SIZE.size or not descriptors:
                return
            (size,) = _SIZE.unpack(header)
            request = json.loads(_receive_exactly(control, size))
        except (EOFError, OSError):
            return
        pid = _fork(children, control, request, descriptors[0])
        control.sendall(_SIZE.pack(pid))


#: The services whose models the runtime's clients load (`_load_sdk_models`).
SERVICES = ("dynamodb", "dynamodbstreams", "apigatewaymanagementapi", "events")


def _load_sdk_models() -> None:
    """Have the runtime's botocore session (`streamer.aws.session`, one per process) read
    its service models now, so that a new environment's first client does not parse them
    again (a good part of a second on a loaded machine). Like a Lambda SnapStart snapshot,
    each environment gets a copy of the session; nothing of it has made a call."""
    aws = sys.modules.get("streamer.aws")
    if aws is None:
        return
    loader = aws.session().get_component("data_loader")
    for service in SERVICES:
        loader.load_service_model(service, "service-2")
    loader.load_data("endpoints")
    loader.load_data("partitions")


def main(descriptor: int, modules: list[str]) -> None:
    for name in (*PRELOAD, *modules):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    _load_sdk_models()
    # What is loaded now stays out of the children's garbage collections, which would
    # otherwise touch (and so copy) every page they share with the zygote.
    gc.freeze()
    with socket.socket(fileno=descriptor) as control:
        serve(control)
    os._exit(0)


class Zygote:
    """The stack's side: start the zygote, ask it for environments."""

    #: Its first line: the stack's `sys.path` (where `local` was found), then this module.
    BOOTSTRAP = (
        "import json, sys; sys.path[:] = json.loads(sys.argv[2]); "
        "from local.zygote import main; main(int(sys.argv[1]), json.loads(sys.argv[3]))"
    )

    def __init__(self, modules: tuple[str, ...] = ()) -> None:
        """`modules`: imported by the zygote too (beyond `PRELOAD`)."""
        import json
        import subprocess

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        arguments = [str(theirs.fileno()), json.dumps(sys.path), json.dumps(list(modules))]
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", self.BOOTSTRAP, *arguments],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        finally:
            theirs.close()
        self._control = ours
        self._lock = threading.Lock()

    def fork(self, setup: dict, descriptor: int) -> int:
        """A new environment on `descriptor` (its end of a socket pair); returns its pid."""
        import json

        request = json.dumps({"setup": setup, "environ": dict(os.environ)}).encode()
        with self._lock:
            socket.send_fds(self._control, [_SIZE.pack(len(request))], [descriptor])
            self._control.sendall(request)
            (pid,) = _SIZE.unpack(_receive_exactly(self._control, _SIZE.size))
        return pid

    def close(self) -> None:
        self._control.close()
        self._process.wait()


_zygote: Zygote | None = None
_zygote_lock = threading.Lock()


def shared(modules: tuple[str, ...] = ()) -> Zygote:
    """This process's zygote, started at the first environment it needs, or before with
    the `modules` it should import."""
    global _zygote
    with _zygote_lock:
        if _zygote is None or _zygote._process.poll() is not None:
            _zygote = Zygote(modules)
        return _zygote


def stop_shared() -> None:
    """Stop this process's zygote, if it started one (environments it forked live on)."""
    global _zygote
    with _zygote_lock:
        if _zygote is not None:
            _zygote.close()
            _zygote = None
