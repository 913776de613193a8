"""Scheduled sweeper: re-drive requests whose lease or retry time passed, and take over
those of a stopped region."""

from __future__ import annotations

from typing import Any

from streamer import invocation, runtime
from streamer.protocol import now_ms
from streamer.sweeper import sweep


@invocation.entry_point
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    rt = runtime.current()
    settings = rt.settings
    return sweep(
        settings.region,
        rt.delivery,
        now_ms(),
        shards=settings.due_shards,
        regions=settings.regions,
        takeover=settings.takeover,
    ).to_dict()
