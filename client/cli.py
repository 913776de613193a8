"""`streamer-client` (or `python -m client`): call Streamer actions, check and cancel
requests from a shell.

Results go to stdout as JSON; progress and errors go to stderr, so that
`streamer-client call ... | jq` sees only the result; with `--json` stdout
holds one JSON document whatever happened. The exit code says how it went
(see EXIT_* and client/README.md). The token comes from `--token`,
`STREAMER_TOKEN`, or `--token-command` (run before every connect, so a
long call reconnects with a fresh token).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from client import __version__
from client.connection import StreamerClient, TokenProvider
from client.errors import (
    ConnectionFailed,
    ConnectionRefused,
    NoAnswer,
    StreamerError,
    TokenFailed,
)
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
    if isinstance(error, ConnectionRefused | TokenFailed):
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
        "--token-command",
        default=os.environ.get("STREAMER_TOKEN_COMMAND"),
        metavar="COMMAND",
        help="shell command printing a fresh JWT, run before every connect "
        "(env STREAMER_TOKEN_COMMAND); wins over --token",
    )
    common.add_argument(
        "--timeout", type=float, default=None, help="give up after this many seconds (exit 6)"
    )
    common.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout: the result or the error, with the exit code",
    )
    parser = argparse.ArgumentParser(
        prog="streamer-client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"streamer-client {__version__}")
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
    if not args.token and not args.token_command:
        parser.error("--token, STREAMER_TOKEN or --token-command is required")
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
    output = Output(args.json, request_id)
    try:
        return asyncio.run(_run(args, output))
    except KeyboardInterrupt:
        return output.error({"error": {"code": "INTERRUPTED", "message": ""}}, EXIT_INTERRUPTED)


class Output:
    """Where answers and errors go: stdout and stderr, or one JSON document (`--json`)."""

    def __init__(self, as_json: bool, request_id: str) -> None:
        self.as_json = as_json
        self.request_id = request_id

    def result(self, value: Any, code: int = EXIT_OK) -> int:
        if self.as_json:
            value = {"ok": code == EXIT_OK, "exit_code": code, "result": value}
        _write(sys.stdout, value)
        return code

    def error(self, report: dict[str, Any], code: int) -> int:
        report = {"request_id": self.request_id, **report}
        if self.as_json:
            _write(sys.stdout, {"ok": False, "exit_code": code, **report})
        else:
            _write(sys.stderr, report)
        return code


def token_command_provider(command: str) -> TokenProvider:
    """A token provider that runs `command` in a shell and reads the token from its stdout."""

    async def provide() -> str:
        process = await asyncio.create_subprocess_shell(
            command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
        token = out.decode().strip()
        if process.returncode != 0 or not token:
            said = err.decode().strip()[-200:]
            raise RuntimeError(f"--token-command exited {process.returncode}: {said}")
        return token

    return provide


async def _run(args: argparse.Namespace, output: Output) -> int:
    command: Callable[[StreamerClient, argparse.Namespace, Output], Awaitable[int]] = COMMANDS[
        args.command
    ]
    token: str | TokenProvider = (
        token_command_provider(args.token_command) if args.token_command else args.token
    )
    try:
        async with asyncio.timeout(args.timeout), StreamerClient(args.url, token) as client:
            return await command(client, args, output)
    except TimeoutError:
        timeout = {
            "code": "CLIENT_TIMEOUT",
            "message": f"no answer within {args.timeout} s; the request may still run "
            f"(streamer-client status {output.request_id})",
        }
        return output.error({"error": timeout}, EXIT_TIMEOUT)
    except StreamerError as exc:
        return output.error(exc.to_json(), exit_code_for(exc))


async def _call(client: StreamerClient, args: argparse.Namespace, output: Output) -> int:
    display = ProgressDisplay(sys.stderr, live=sys.stderr.isatty())
    try:
        result = await client.call(
            args.action, args.payload, on_progress=display.show, request_id=args.id
        )
    finally:
        display.finish()
    return output.result(result)


async def _status(client: StreamerClient, args: argparse.Namespace, output: Output) -> int:
    snapshot = await client.status(args.request_id)
    return output.result(snapshot.to_json())


async def _cancel(client: StreamerClient, args: argparse.Namespace, output: Output) -> int:
    completion = await client.cancel(args.request_id)
    # Non-zero when there was nothing left to cancel: it had already ended otherwise.
    return output.result(
        completion.to_json(), EXIT_OK if completion.status == "CANCELLED" else EXIT_FAILED
    )


COMMANDS: dict[str, Callable[[StreamerClient, argparse.Namespace, Output], Awaitable[int]]] = {
    "call": _call,
    "status": _status,
    "cancel": _cancel,
}


def _write(stream: Any, value: Any) -> None:
    stream.write(json.dumps(value) + "\n")
    stream.flush()
