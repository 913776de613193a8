"""moto's server as the local stack's child process, ending when the stack does.

`python -m local.moto_child HOST PORT PARENT_PID`: serves moto until the
process that started it is gone (even killed with SIGKILL, which gives it no
chance to stop its children).
"""

from __future__ import annotations

import os
import sys
import threading
import time


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(0)


def main(argv: list[str]) -> None:
    host, port, parent_pid = argv[0], int(argv[1]), int(argv[2])
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
    from moto.server import main as serve

    serve(["--host", host, "--port", str(port)])


if __name__ == "__main__":
    main(sys.argv[1:])
