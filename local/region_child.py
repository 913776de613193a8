"""One region of a multi-region local stack: a single-region `Stack` in a process of its own.

`python -m local.region_child` reads its `RegionLaunch` (pickled, from the
multi-region stack that started it) on stdin and runs the region's stack
until SIGTERM, or until that parent process is gone. A process per region,
because every function reads its environment once per process: the region's
functions must see its region, its DynamoDB endpoint and its API.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import sys
import threading
from dataclasses import dataclass

from local import logs
from local.stack import Stack, StackOptions, StartupError

PARENT_POLL_S = 0.5


@dataclass(frozen=True)
class RegionLaunch:
    """What a region's process is told: its stack's options, logging, and whom to outlive not."""

    options: StackOptions
    log_level: str
    parent_pid: int


def _watch_parent(parent_pid: int, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Stop when the multi-region stack is gone (even killed with SIGKILL)."""
    while os.getppid() == parent_pid:
        threading.Event().wait(PARENT_POLL_S)
    loop.call_soon_threadsafe(stop.set)


async def _serve(launch: RegionLaunch) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    threading.Thread(
        target=_watch_parent, args=(launch.parent_pid, loop, stop), daemon=True
    ).start()
    stack = Stack(launch.options)
    try:
        await stack.start()
        await stop.wait()
    finally:
        if not await stack.close():
            logging.shutdown()
            sys.stdout.flush()
            os._exit(0)


def main() -> int:
    launch: RegionLaunch = pickle.load(sys.stdin.buffer)
    region = launch.options.region
    logs.configure(launch.log_level, region)
    try:
        asyncio.run(_serve(launch))
    except StartupError as error:
        print(f"python -m local: error: region {region}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
