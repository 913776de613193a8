"""`python -m client`: its output and exit codes, then the CLI run against the scripted server."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import sys
from pathlib import Path

import pytest

from client import StreamerClient, __version__, errors
from client.cli import exit_code_for
from client.messages import Progress
from client.progress_display import ProgressDisplay, bar_line, fitted_bar_line, plain_line
from tests.client.fake_streamer_server import VALID_TOKEN, FakeStreamer, PageGate, run

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORT_3 = json.dumps({"pages": 3, "page_ms": 0})


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    return env | extra


async def start_cli(*args: str, env: dict[str, str] | None = None, stderr: int | None = None):
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client",
        *args,
        cwd=REPO_ROOT,
        env=env or cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if stderr is None else stderr,
    )


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    """Run the CLI to its end: exit code, stdout, stderr lines."""
    process = await start_cli(*args, env=env)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode().splitlines()


def connection(server: FakeStreamer) -> list[str]:
    return ["--url", server.url, "--token", VALID_TOKEN]


def progress(percentage: float, message: str = "page 2 of 5") -> Progress:
    return Progress("r-1", 1, percentage, message, {}, None)


def test_plain_progress_lines_read_like_the_handlers_message():
    # GIVEN progress updates
    # WHEN rendered for a pipe
    # THEN each is "<percent rounded down>% <message>"
    assert plain_line(progress(40.0)) == "40% page 2 of 5"
    assert plain_line(progress(66.666, "page 2 of 3")) == "66% page 2 of 3"
    assert plain_line(progress(99.9, "")) == "99%"


def test_progress_bar_fills_with_the_percentage():
    # GIVEN a half-done request
    # WHEN rendered as a bar 30 wide
    line = bar_line(progress(50.0), width=30)
    # THEN half the bar is filled
    assert line == "[" + "#" * 15 + "-" * 15 + "]  50% page 2 of 5"


def test_live_display_redraws_one_line_and_plain_display_writes_lines():
    # GIVEN a live and a plain display
    live, plain = io.StringIO(), io.StringIO()
    live_display, plain_display = ProgressDisplay(live, live=True), ProgressDisplay(plain, False)
    # WHEN two updates are shown and the displays finish
    for display in (live_display, plain_display):
        display.show(progress(20.0, "page 1 of 5"))
        display.show(progress(40.0, "page 2 of 5"))
        display.finish()
    # THEN the live one redraws in place and ends its line; the plain one has a line per update
    assert live.getvalue().count("\r") == 2
    assert live.getvalue().endswith("\n")
    assert live.getvalue().count("\n") == 1
    assert plain.getvalue() == "20% page 1 of 5\n40% page 2 of 5\n"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.ProcessingFailed("PROCESSING_FAILED", "x", request_status="FAILED"), 1),
        (errors.RequestTimeout("TIMEOUT", "x", request_status="FAILED"), 1),
        (errors.ValidationError("VALIDATION_ERROR", "x"), 2),
        (errors.NotFound("NOT_FOUND", "x"), 2),
        (errors.RequestCancelled("CANCELLED", "x", request_status="CANCELLED"), 3),
        (errors.ConnectionRefused(401), 4),
        (errors.ConnectionRefused(403), 4),
        (errors.TokenFailed("the token provider failed"), 4),
        (errors.ConnectionLost("gone"), 5),
        (errors.ConnectionFailed("unreachable"), 5),
        (errors.Unavailable("UNAVAILABLE", "store out", {"retry_after_ms": 1000}, True), 2),
        (errors.NoAnswer("no answer within 35.0 s", request_id="r-1"), 6),
    ],
)
def test_exit_codes_tell_how_the_request_ended(error, code):
    # GIVEN an error / WHEN the CLI maps it / THEN the documented exit code comes out
    assert exit_code_for(error) == code


def test_refused_handshake_codes_follow_the_http_status():
    # GIVEN refusals with 401, 403 and 503
    # WHEN they become errors
    # THEN 401/403 map to UNAUTHORIZED/FORBIDDEN and are final; 503 is retryable
    assert (errors.ConnectionRefused(401).code, errors.ConnectionRefused(401).retryable) == (
        "UNAUTHORIZED",
        False,
    )
    assert errors.ConnectionRefused(403).code == "FORBIDDEN"
    assert errors.ConnectionRefused(503).retryable is True


def test_call_of_a_sync_action_prints_its_data_and_exits_0():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN / WHEN echo is called
            code, out, _ = await cli("call", "echo", "--payload", '{"a": 1}', *connection(server))
            # THEN the data is the JSON on stdout and the exit code is 0
            assert code == 0
            assert json.loads(out) == {"echo": {"a": 1}}

    run(scenario())


def test_call_of_a_report_prints_plain_progress_lines_and_the_result():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN output that is not a terminal
            # WHEN a 3-page report is called with a chosen id
            code, out, err = await cli(
                "call", "generate_report", "--payload", REPORT_3, "--id", "cli-1",
                *connection(server),
            )  # fmt: skip
            # THEN progress is one plain line per page and the result is the only stdout
            assert code == 0
            assert err == ["33% page 1 of 3", "66% page 2 of 3", "100% page 3 of 3"]
            assert json.loads(out) == {"pages": 3, "report_id": "rep-cli-1"}

    run(scenario())


def test_progress_is_a_live_bar_on_a_terminal():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN stderr attached to a terminal
            terminal, attached = os.openpty()
            process = await start_cli(
                "call", "generate_report", "--payload", REPORT_3, *connection(server),
                stderr=attached,
            )  # fmt: skip
            os.close(attached)
            # WHEN the report runs
            out, _ = await process.communicate()
            shown = b""
            while True:
                try:
                    chunk = os.read(terminal, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                shown += chunk
            os.close(terminal)
            # THEN one bar is redrawn in place up to 100 %, and stdout still holds the result
            assert process.returncode == 0
            assert shown.count(b"\r[") == 3
            assert b"] 100% page 3 of 3" in shown
            assert json.loads(out)["pages"] == 3

    run(scenario())


def test_failed_request_exits_1_with_the_error_on_stderr():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN a report that fails at page 2
            payload = json.dumps({"pages": 3, "page_ms": 0, "fail_at_page": 2})
            # WHEN it is called
            code, out, err = await cli(
                "call", "generate_report", "--payload", payload, *connection(server)
            )
            # THEN exit 1, nothing on stdout, and the error as JSON on stderr
            assert code == 1
            assert out == ""
            assert err[0] == "33% page 1 of 3"
            report = json.loads(err[-1])
            assert (report["status"], report["error"]["code"]) == ("FAILED", "PROCESSING_FAILED")

    run(scenario())


def test_rejected_requests_exit_2():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN an invalid payload and an unknown action
            # WHEN they are called
            invalid = await cli("call", "generate_report", "--payload", "{}", *connection(server))
            unknown = await cli("call", "nope", *connection(server))
            # THEN both exit 2 with the protocol code on stderr
            assert invalid[0] == unknown[0] == 2
            assert json.loads(invalid[2][-1])["error"]["code"] == "VALIDATION_ERROR"
            assert json.loads(unknown[2][-1])["error"]["code"] == "INVALID_ACTION"

    run(scenario())


def test_cancelled_request_exits_3():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN a CLI call whose report is held at page 2
            gate = PageGate(page=2)
            server.before_page = gate
            process = await start_cli(
                "call", "generate_report", "--payload", REPORT_3, "--id", "cli-c",
                *connection(server),
            )  # fmt: skip
            await gate.reached.wait()
            # WHEN the request is cancelled
            await server.cancel_request("cli-c")
            _out, err = await process.communicate()
            # THEN the CLI exits 3 and says CANCELLED
            assert process.returncode == 3
            assert json.loads(err.decode().splitlines()[-1])["status"] == "CANCELLED"

    run(scenario())


def test_refused_connection_exits_4():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN / WHEN a wrong token is used
            code, _, err = await cli("call", "echo", "--url", server.url, "--token", "wrong")
            # THEN exit 4 with the HTTP status
            assert code == 4
            assert json.loads(err[-1])["error"]["details"] == {"status_code": 401}

    run(scenario())


def test_unreachable_server_exits_5():
    async def scenario():
        # GIVEN a port nobody listens on
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        # WHEN the CLI calls it
        code, _, err = await cli("call", "echo", "--url", f"ws://127.0.0.1:{port}/", "--token", "t")
        # THEN exit 5
        assert code == 5
        assert json.loads(err[-1])["error"]["code"] == "CONNECTION_FAILED"

    run(scenario())


def test_timeout_exits_6_and_names_the_request():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN a report that is held and never finishes
            server.before_page = PageGate(page=1)
            # WHEN the CLI waits with a short --timeout
            code, _, err = await cli(
                "call", "generate_report", "--payload", REPORT_3, "--id", "slow-1",
                "--timeout", "0.5", *connection(server),
            )  # fmt: skip
            # THEN exit 6, naming the request so that its status can be checked later
            assert code == 6
            report = json.loads(err[-1])
            assert (report["request_id"], report["error"]["code"]) == ("slow-1", "CLIENT_TIMEOUT")

    run(scenario())


def test_url_and_token_come_from_the_environment():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN STREAMER_URL and STREAMER_TOKEN
            env = cli_env(STREAMER_URL=server.url, STREAMER_TOKEN=VALID_TOKEN)
            # WHEN the CLI runs without --url/--token
            code, out, _ = await cli("call", "echo", env=env)
            missing = await cli("call", "echo")
            # THEN it uses them, and without them it is a usage error (2)
            assert code == 0
            assert json.loads(out) == {"echo": {}}
            assert missing[0] == 2
            assert any("STREAMER_URL" in line for line in missing[2])

    run(scenario())


def test_status_prints_the_snapshot_and_unknown_ids_exit_2():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN a finished request
            async with StreamerClient(server.url, VALID_TOKEN) as client:
                await client.call("generate_report", {"pages": 1, "page_ms": 0}, request_id="q-1")
            # WHEN status is asked for it and for an unknown id
            code, out, _ = await cli("status", "q-1", *connection(server))
            unknown = await cli("status", "nobody", *connection(server))
            # THEN the snapshot is printed; the unknown id is NOT_FOUND, exit 2
            assert code == 0
            snapshot = json.loads(out)
            assert (snapshot["request_id"], snapshot["status"]) == ("q-1", "COMPLETED")
            assert snapshot["result"] == {"pages": 1, "report_id": "rep-q-1"}
            assert unknown[0] == 2
            assert json.loads(unknown[2][-1])["error"]["code"] == "NOT_FOUND"

    run(scenario())


def test_cancel_command_cancels_a_running_request_and_reports_finished_ones():
    async def scenario():
        async with FakeStreamer() as server:
            gate = PageGate(page=2)
            server.before_page = gate
            async with StreamerClient(server.url, VALID_TOKEN) as client:
                # GIVEN a running request and a finished one
                running = asyncio.create_task(
                    client.call("generate_report", {"pages": 3, "page_ms": 0}, request_id="k-1")
                )
                await gate.reached.wait()
                # WHEN the CLI cancels both (the running one once its worker goes on)
                cancelling = asyncio.create_task(cli("cancel", "k-1", *connection(server)))
                await server.wait_until(lambda: server.requests["k-1"].cancel_requested)
                gate.opened.set()
                code, out, _ = await cancelling
                await asyncio.gather(running, return_exceptions=True)
                await client.call("generate_report", {"pages": 1, "page_ms": 0}, request_id="k-2")
                late = await cli("cancel", "k-2", *connection(server))
            # THEN the running one ends CANCELLED (exit 0); the finished one is unchanged (exit 1)
            assert code == 0
            assert json.loads(out)["status"] == "CANCELLED"
            assert late[0] == 1
            assert json.loads(late[1])["status"] == "COMPLETED"

    run(scenario())


@pytest.mark.parametrize("columns", [12, 30, 60, 80, 200])
def test_the_live_bar_fits_the_terminal_width(columns):
    # GIVEN an update with a long message and a terminal `columns` wide
    update = progress(42.0, "page 42 of 100: " + "rendering the appendix " * 5)
    # WHEN it is drawn
    line = fitted_bar_line(update, columns)
    # THEN it leaves the last column free (no wrap) and still says how far it is
    assert len(line) <= columns - 1
    assert "42%" in line
    # AND a terminal wide enough gets the bar
    assert ("[" in line) is (columns >= 24)


def test_a_live_display_draws_for_the_width_at_each_update():
    # GIVEN a display whose terminal shrinks between two updates
    widths = iter([100, 30])
    stream = io.StringIO()
    display = ProgressDisplay(stream, live=True, columns=lambda: next(widths))
    # WHEN two updates are shown
    display.show(progress(10.0, "x" * 80))
    display.show(progress(20.0, "x" * 80))
    # THEN each line fits the width it was drawn for
    first, second = (part.removesuffix("\x1b[K") for part in stream.getvalue().split("\r")[1:])
    assert 30 < len(first) <= 99
    assert len(second) <= 29


def test_version_prints_the_package_version():
    async def scenario():
        # GIVEN / WHEN --version / THEN the version and exit 0
        code, out, _ = await cli("--version")
        assert code == 0
        assert out.strip() == f"streamer-client {__version__}"

    run(scenario())


def test_json_output_holds_the_result_or_the_error_with_the_exit_code():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN --json
            # WHEN a call succeeds and one is rejected
            ok = await cli("call", "echo", "--payload", '{"a": 1}', "--json", *connection(server))
            bad = await cli("call", "nope", "--id", "n-1", "--json", *connection(server))
            # THEN stdout holds one JSON document each, saying how it went
            assert ok[0] == 0
            assert json.loads(ok[1]) == {"ok": True, "exit_code": 0, "result": {"echo": {"a": 1}}}
            assert bad[0] == 2
            document = json.loads(bad[1])
            assert (document["ok"], document["exit_code"], document["request_id"]) == (
                False,
                2,
                "n-1",
            )
            assert document["error"]["code"] == "INVALID_ACTION"
            assert bad[2] == []

    run(scenario())


def test_the_token_command_gives_the_token_and_its_failure_exits_4():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN a token command printing a valid token, and one that fails
            good = f"echo {VALID_TOKEN}"
            # WHEN the CLI uses each (the first also with a wrong --token it must not use)
            code, out, _ = await cli(
                "call", "echo", "--url", server.url, "--token", "wrong", "--token-command", good
            )
            failed = await cli(
                "call", "echo", "--url", server.url, "--token-command", "echo no >&2; exit 3"
            )
            # THEN the first connects with the command's token; the second exits 4 (TOKEN_FAILED)
            assert code == 0
            assert json.loads(out) == {"echo": {}}
            assert failed[0] == 4
            assert json.loads(failed[2][-1])["error"]["code"] == "TOKEN_FAILED"

    run(scenario())
