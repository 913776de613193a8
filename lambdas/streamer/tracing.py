"""X-Ray tracing, only when configured: the SDK is imported lazily.

Importing aws_xray_sdk costs cold-start time, so a function with tracing off
never imports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_enabled = False


def enable_tracing(enabled: bool) -> None:
    """Patch botocore for X-Ray if `enabled` (once per process)."""
    global _enabled
    if not enabled or _enabled:
        return
    from aws_xray_sdk.core import patch

    patch(["botocore"])
    _enabled = True


@contextmanager
def subsegment(name: str) -> Iterator[None]:
    """An X-Ray subsegment around a block when tracing is on; nothing otherwise."""
    if not _enabled:
        yield
        return
    from aws_xray_sdk.core import xray_recorder

    with xray_recorder.in_subsegment(name):
        yield
