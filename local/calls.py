"""A log of the DynamoDB calls the functions make, for replaying them against the emulator alone.

With `STREAMER_LOCAL_CALL_LOG=PATH` in the stack's environment, every
execution environment appends one JSON line to PATH per DynamoDB call its
function makes: the function, the invocation, the operation, the request
body as sent, and when the call started and ended (`time.time()`, one clock
for every process of the machine). `bench.emulator` replays those calls
straight to a fresh emulator to tell the emulator's own time from the rest.

The meter is a botocore event handler on every botocore session
(`register_botocore_handler`), so the runtime it measures is the unchanged one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

#: The environment variable naming the log file; unset, nothing is logged.
ENV = "STREAMER_LOCAL_CALL_LOG"


def register_botocore_handler(event: str, handler: Any) -> None:
    """Have every botocore client of this process call `handler` on `event`.

    Sessions made from now on register it as they are made; the runtime's own session
    (`streamer.aws.session`), which an environment forked from the zygote already has,
    is told directly. Call it before the first client is made.
    """
    from botocore.handlers import BUILTIN_HANDLERS

    BUILTIN_HANDLERS.append((event, handler))
    aws = sys.modules.get("streamer.aws")
    if aws is not None and getattr(aws, "_session", None) is not None:
        aws.session().register(event, handler)


class CallLog:
    """Appends each DynamoDB call of this process to the log, one `write` per line."""

    def __init__(self, path: str, function_name: str) -> None:
        self._function_name = function_name
        #: The invocation being served (one at a time in an execution environment).
        self.invocation = ""
        # Opened once for the process, appending: each line is one `write` at the end,
        # whichever of the function's threads makes it.
        self._descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @classmethod
    def from_env(cls, function_name: str) -> CallLog | None:
        """Install the meter if `STREAMER_LOCAL_CALL_LOG` names a file; before any client."""
        path = os.environ.get(ENV)
        if not path:
            return None
        log = cls(path, function_name)
        register_botocore_handler("before-call.dynamodb", log._before)
        register_botocore_handler("after-call.dynamodb", log._after)
        return log

    def _before(self, params: dict, context: dict, **_: Any) -> None:
        body = params.get("body") or b""
        context["local_call"] = {
            "body": body.decode() if isinstance(body, bytes) else str(body),
            "start": time.time(),
        }

    def _after(self, model: Any, context: dict, parsed: dict, **_: Any) -> None:
        call = context.pop("local_call", None)
        if call is None:
            return
        entry = {
            "function": self._function_name,
            "invocation": self.invocation,
            "operation": model.name,
            "start": call["start"],
            "end": time.time(),
            "error": (parsed.get("Error") or {}).get("Code") if isinstance(parsed, dict) else None,
            "body": call["body"],
        }
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        os.write(self._descriptor, line)
