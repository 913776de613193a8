"""The application the two-region stack runs (`--app tests.regions.app`).

The fault suite's app (every handler run journaled) plus `environment`, a
sync action answering what its function was configured with, so a test sees
what each region's functions really got.
"""

from __future__ import annotations

import os
from typing import Any

from streamer.handlers import App, Progress, Request
from tests.faults.app import app as faults_app

#: The variables `environment` reports.
REPORTED = (
    "AWS_REGION",
    "STREAMER_REGIONS",
    "STREAMER_TABLE_ENDPOINTS",
    "STREAMER_MANAGEMENT_ENDPOINT",
    "STREAMER_SWEEP_INTERVAL_S",
    "STREAMER_HEARTBEAT_STALE_S",
    "STREAMER_TAKEOVER_GRACE_S",
    "AWS_ENDPOINT_URL_DYNAMODB",
)

app = App()
for handler in faults_app:
    app.register(handler)


@app.action("environment", estimated_duration=0.01)
def environment(request: Request, progress: Progress) -> dict[str, Any]:
    return {name: os.environ.get(name) for name in REPORTED}
