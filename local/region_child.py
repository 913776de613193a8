"""One region of a multi-region local stack: a single-region `Stack` in a process of its own.

`RegionProcess` is the multi-region stack's handle on it (start, stop, start
again). `python -m local.region_child` is the process: it reads its
`RegionLaunch` (pickled, from the multi-region stack that started it) on
stdin and runs the region's stack until SIGTERM, or until that parent
process is gone. A process per region, because every function reads its
environment once per process: the region's functions must see its region,
its DynamoDB endpoint and its API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from local import logs
from local.region_control import RegionFailed
from local.stack import Stack, StackOptions, StartupError

log = logging.getLogger("local.region_child")

PARENT_POLL_S = 0.5
REGION_START_TIMEOUT_S = 90
#: How long a region stopped with SIGTERM may take past its shutdown grace.
REGION_STOP_MARGIN_S = 20


@dataclass(frozen=True)
class RegionLaunch:
    """What a region's process is told: its stack's options, logging, and whom to outlive not."""

    options: StackOptions
    log_level: str
    parent_pid: int


class RegionProcess:
    """One region's stack in a process (and process group) of its own; started again at will."""

    def __init__(self, launch: RegionLaunch, environment: Mapping[str, str]) -> None:
        self.region = launch.options.region
        self._launch = launch
        self._environment = dict(environment)
        assert launch.options.ready_file is not None
        self._ready_file = launch.options.ready_file
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = REGION_START_TIMEOUT_S) -> dict:
        """Start the region's stack; its ready file's content once it is ready."""
        self._ready_file.unlink(missing_ok=True)
        # Its own session: a terminal's Ctrl-C reaches only the multi-region stack, which
        # stops the regions itself, and an outage kills the region's whole group.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "local.region_child"],
            stdin=subprocess.PIPE,
            env=self._environment,
            start_new_session=True,
        )
        assert self._process.stdin is not None
        with self._process.stdin as stdin:
            pickle.dump(self._launch, stdin)
        deadline = time.monotonic() + timeout_s
        while not self._ready_file.exists():
            code = self._process.poll()
            if code is not None:
                raise RegionFailed(f"region {self.region} exited {code} before it was ready")
            if time.monotonic() > deadline:
                self.stop(graceful=False)
                raise RegionFailed(f"region {self.region} was not ready in {timeout_s:g} s")
            time.sleep(0.05)
        return json.loads(self._ready_file.read_text())

    def stop(self, graceful: bool) -> None:
        """Gracefully: SIGTERM, as `python -m local` stops. Otherwise the region's process
        group is killed at once, as an outage ends it: every worker mid-invocation too."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            if graceful:
                process.terminate()
                timeout = self._launch.options.shutdown_grace_s + REGION_STOP_MARGIN_S
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    log.error("region %s did not stop in %.0f s; killing it", self.region, timeout)
            self._kill_group(process.pid)
            process.wait()
        self._ready_file.unlink(missing_ok=True)

    @staticmethod
    def _kill_group(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


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
