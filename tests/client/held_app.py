"""The application of the client's rate-limit test stack (`--app tests.client.held_app`).

Its one action runs until the test releases it, so a test can keep requests
running across a reconnect for as long as it needs, without guessing durations.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from streamer.handlers import App, Progress, Request

#: Longest a request waits for its release: a failed test must not hold the stack.
HOLD_LIMIT_S = 60.0

app = App()


@app.action("hold", estimated_duration=60)
def hold(request: Request, progress: Progress) -> dict[str, Any]:
    """Runs until the file named by `payload["until"]` exists; says whether it did."""
    release = Path(request.payload["until"])
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"released": release.exists()}
