"""`python -m client`: call Streamer actions, check and cancel requests from a shell.

Results go to stdout as JSON; progress and errors go to stderr, so that
`python -m client call ... | jq` sees only the result. The exit code says
how it went (see EXIT_* and client/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from client.connection import StreamerClient
from client.errors import ConnectionFailed, ConnectionRefused, NoAnswer, StreamerError
from client.messages import is_valid_request_id, new_request_id
from client.progress_display import ProgressDisplay

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REJECTED = 2
EXIT_CANCELLED = 3
EXIT_REFUSED = 4
EXIT_CONNECTION = 5
EXIT_TIMEOUT = 6
EXIT_INTERRUPTED = 130


def exit_code_for(error: StreamerError) -> int:
    """The exit code for an error: how the request ended, or why it never ran."""
    if isinstance(error, ConnectionRefused):
        return EXIT_REFUSED
    if isinstance(error, ConnectionFailed):
        return EXIT_CONNECTION
    if isinstance(error, NoAnswer):
        return EXIT_TIMEOUT
    if error.request_status == "CANCELLED":
        return EXIT_CANCELLED
    if error.request_status == "FAILED":
        return EXIT_FAILED
    return EXIT_REJECTED


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", default=os.environ.get("STREAMER_URL"), help="WebSocket URL (env STREAMER_URL)"
    )
    common.add_argument(
        "--token", default=os.environ.get("STREAMER_TOKEN"), help="JWT (env STREAMER_TOKEN)"
    )
    common.add_argument(
        "--timeout", type=float, default=None, help="give up after this many seconds (exit 6)"
    )
    parser = argparse.ArgumentParser(prog="python -m client", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    call = commands.add_parser("call", parents=[common], help="run an action, print its result")
    call.add_argument("action")
    call.add_argument("--payload", default="{}", help="JSON object (default {})")
    call.add_argument("--id", help="client request id, the idempotency key (default: generated)")

    status = commands.add_parser("status", parents=[common], help="print a request's state")
    status.add_argument("request_id")

    cancel = commands.add_parser("cancel", parents=[common], help="cancel a request")
    cancel.add_argument("request_id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("--url or STREAMER_URL is required")
    if not args.token:
        parser.error("--token or STREAMER_TOKEN is required")
    if args.command == "call":
        try:
            args.payload = json.loads(args.payload)
        except ValueError as exc:
            parser.error(f"--payload is not JSON: {exc}")
        if not isinstance(args.payload, dict):
            parser.error("--payload must be a JSON object")
        args.id = args.id or new_request_id()
    request_id = args.id if args.command == "call" else args.request_id
    if not is_valid_request_id(request_id):
        parser.error("request ids are 1-128 characters of [A-Za-z0-9_.:-]")
    try:
        return asyncio.run(_run(args, request_id))
    except KeyboardInterrupt:
        _report({"request_id": request_id, "error": {"code": "INTERRUPTED", "message": ""}})
        return EXIT_INTERRUPTED


async def _run(args: argparse.Namespace, request_id: str) -> int:
    command: Callable[[StreamerClient, argparse.Namespace], Awaitable[int]] = COMMANDS[args.command]
    try:
        async with asyncio.timeout(args.timeout), StreamerClient(args.url, args.token) as client:
            return await command(client, args)
    except TimeoutError:
        _report(
            {
                "request_id": request_id,
                "error": {
                    "code": "CLIENT_TIMEOUT",
                    "message": f"no answer within {args.timeout} s; the request may still run "
                    f"(python -m client status {request_id})",
                },
            }
        )
        return EXIT_TIMEOUT
    except StreamerError as exc:
        _report(exc.to_json())
        return exit_code_for(exc)


async def _call(client: StreamerClient, args: argparse.Namespace) -> int:
    display = ProgressDisplay(sys.stderr, live=sys.stderr.isatty())
    try:
        result = await client.call(
            args.action, args.payload, on_progress=display.show, request_id=args.id
        )
    finally:
        display.finish()
    _print(result)
    return EXIT_OK


async def _status(client: StreamerClient, args: argparse.Namespace) -> int:
    snapshot = await client.status(args.request_id)
    _print(snapshot.to_json())
    return EXIT_OK


async def _cancel(client: StreamerClient, args: argparse.Namespace) -> int:
    completion = await client.cancel(args.request_id)
    _print(completion.to_json())
    # Non-zero when there was nothing left to cancel: it had already ended otherwise.
    return EXIT_OK if completion.status == "CANCELLED" else EXIT_FAILED


COMMANDS: dict[str, Callable[[StreamerClient, argparse.Namespace], Awaitable[int]]] = {
    "call": _call,
    "status": _status,
    "cancel": _cancel,
}


def _print(value: Any) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def _report(error: dict[str, Any]) -> None:
    sys.stderr.write(json.dumps(error) + "\n")
    sys.stderr.flush()
