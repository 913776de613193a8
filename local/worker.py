"""One Lambda execution environment: a process forked by `local.zygote` for `local.isolation`.

It gets one end of a socket pair, over which the stack talks to it through a
`local.channel.Channel`. As Lambda's runtime does, it first imports the
handler (the init phase) and says whether that worked, then runs one
invocation at a time, each with a context rebuilt from what the stack sent
(request id, deadline), and answers with the handler's JSON or its error.
It ends when told to, or when the stack is gone (its end of the pair closes).

Its setup holds the function's spec, region, account, the stack's
`sys.path` (where `--app-path` put the app) and log level, and whether this
environment takes fault instructions (`local.faults`).
"""

from __future__ import annotations

import json
import logging
import select
import socket
import time
import traceback

from local.channel import Channel

#: What the environment sends once the handler is imported.
READY = "ready"
#: What it sends when the import failed: then (error type, message, traceback).
INIT_ERROR = "init-error"


def _incoming(channel: Channel) -> select.poll:
    """What the worker waits on for its next invocation: `poll` for input on its socket.

    A read blocked on a Unix socket is woken whenever the socket's wait queue is, also
    when the stack reads the reply just sent and frees room to write: it then finds
    nothing and sleeps again, one more context switch an invocation. A `poll` waiter is
    woken only for the events it asked for (input, hang-up, error).
    """
    incoming = select.poll()
    incoming.register(channel.fileno(), select.POLLIN)
    return incoming


def _import_handler(handler: str):
    """The handler, as Lambda's Python runtime imports it; its errors as the runtime names them."""
    from local.functions import resolve_handler

    module_name, _, function_name = handler.rpartition(".")
    try:
        return resolve_handler(handler), None
    except ImportError as error:
        # The Python runtime's words for a module it cannot import.
        message = f"Unable to import module '{module_name}': {error}"
        return None, ("Runtime.ImportModuleError", message)
    except AttributeError:
        return None, (
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        )
    except SyntaxError as error:
        message = f"Syntax error in module '{module_name}': {error}"
        return None, ("Runtime.UserCodeSyntaxError", message)
    except Exception as error:
        return None, (type(error).__name__, str(error))


def serve(channel: Channel, setup: dict) -> None:
    """Import the handler, then run invocations from `channel` until told to stop."""
    from local.functions import FunctionSpec, LambdaContext

    spec = FunctionSpec(**setup["spec"])
    from local import iam

    # Its calls are checked against its deployed role's grants, before any client is made.
    iam.enforce(spec.name, setup["account_id"])
    faults = None
    if setup.get("faults"):
        from local.faults import CallFaults

        faults = CallFaults.install()
    from local.calls import CallLog

    calls = CallLog.from_env(spec.name)
    started = time.monotonic()
    handler, failure = _import_handler(spec.handler)
    if failure is not None:
        channel.send((INIT_ERROR, *failure, traceback.format_exc()))
        return
    channel.send((READY, (time.monotonic() - started) * 1000))
    incoming = _incoming(channel)
    while True:
        try:
            if not channel.buffered():
                incoming.poll()
            message = channel.recv()
        except (EOFError, OSError):
            return  # the stack is gone
        if message is None:
            return
        aws_request_id, deadline, event_json, instructions = message
        if faults is not None:
            faults.arm(instructions)
        if calls is not None:
            calls.invocation = aws_request_id
        context = LambdaContext(
            spec, setup["region"], setup["account_id"], aws_request_id, deadline
        )
        try:
            answer_json = json.dumps(handler(json.loads(event_json), context))
            reply: tuple = ("ok", answer_json)
        except Exception as error:
            reply = ("error", type(error).__name__, str(error), traceback.format_exc())
        channel.send(reply)


def main(descriptor: int, setup: dict) -> None:
    """Serve on the socket `descriptor` as `setup` says (`local.zygote` forks and calls this)."""
    logging.basicConfig(
        level=setup["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if setup["log_level"] > logging.DEBUG:
        # As in the stack's process: the libraries' per-call chatter only at DEBUG.
        for noisy in ("botocore", "pynamodb", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    channel = Channel(socket.socket(fileno=descriptor))
    try:
        serve(channel, setup)
    finally:
        channel.close()
