"""A log of the DynamoDB calls the functions make, for replaying them against the emulator alone.

With `STREAMER_LOCAL_CALL_LOG=PATH` in the stack's environment, every
execution environment appends one JSON line to PATH per DynamoDB call its
function makes: the function, the invocation, the operation, the request
body as sent, and when the call started and ended (`time.time()`, one clock
for every process of the machine). `bench.emulator` replays those calls
straight to a fresh emulator to tell the emulator's own time from the rest.

The meter is a botocore event handler that every botocore session registers
when it is made (`botocore.handlers.BUILTIN_HANDLERS`), so the runtime it
measures is the unchanged one.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

#: The environment variable naming the log file; unset, nothing is logged.
ENV = "STREAMER_LOCAL_CALL_LOG"


class CallLog:
    """Appends each DynamoDB call of this process to the log, one `write` per line."""

    def __init__(self, path: str, function_name: str) -> None:
        self._path = path
        self._function_name = function_name
        #: The invocation being served (one at a time in an execution environment).
        self.invocation = ""

    @classmethod
    def from_env(cls, function_name: str) -> CallLog | None:
        """Install the meter if `STREAMER_LOCAL_CALL_LOG` names a file; before any client."""
        path = os.environ.get(ENV)
        if not path:
            return None
        from botocore.handlers import BUILTIN_HANDLERS

        log = cls(path, function_name)
        BUILTIN_HANDLERS.append(("before-call.dynamodb", log._before))
        BUILTIN_HANDLERS.append(("after-call.dynamodb", log._after))
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
        descriptor = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line)
        finally:
            os.close(descriptor)
