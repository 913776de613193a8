"""The physical baseline: a bare `websockets` server that sends every message back.

`python -m bench.echo_server --ready-file PATH` listens on a free port of
127.0.0.1 with the local gateway's socket settings (no compression, no
keepalive pings) and writes `{"websocket_url": ...}` to PATH when it listens.
The difference between this and the local stack is what Streamer's path
costs: authorizer, gateway, router, JSON events and the route response.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


async def _echo(socket: ServerConnection) -> None:
    try:
        async for message in socket:
            await socket.send(message)
    except ConnectionClosed:
        pass


async def _serve(ready_file: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    async with serve(_echo, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        # Written aside and renamed, so a reader sees nothing or all of it.
        partial = ready_file.with_suffix(".partial")
        partial.write_text(json.dumps({"websocket_url": f"ws://127.0.0.1:{port}/"}))
        os.replace(partial, ready_file)
        await stop.wait()
    ready_file.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.echo_server", description=__doc__)
    parser.add_argument("--ready-file", type=Path, required=True)
    asyncio.run(_serve(parser.parse_args().ready_file))


if __name__ == "__main__":
    main()
