"""moto's server as the local stack's child process, ending when the stack does.

`python -m local.moto_child HOST PARENT_PID`: binds a free port on HOST,
writes its number as the first line on stdout, and serves moto until the
process that started it is gone (even killed with SIGKILL, which gives it no
chance to stop its children) or it is sent SIGTERM.
"""

from __future__ import annotations

import logging
import os
import sys
import time


def main(argv: list[str]) -> None:
    host, parent_pid = argv[0], int(argv[1])
    # Werkzeug logs every request at INFO; the stack keeps this process's stderr.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
