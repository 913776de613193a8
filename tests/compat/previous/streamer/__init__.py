"""Streamer: long requests for WebSocket clients on AWS.

What application authors import. Everything here is light (no AWS SDK), so
importing `streamer` costs nothing on a cold start.
"""

from streamer.errors import (
    ErrorCode,
    HandlerFailed,
    RequestCancelled,
    RetryableError,
    StreamerError,
    ValidationError,
)
from streamer.handlers import App, Handler, Progress, Request, Waiting

__all__ = [
    "App",
    "ErrorCode",
    "Handler",
    "HandlerFailed",
    "Progress",
    "Request",
    "RequestCancelled",
    "RetryableError",
    "StreamerError",
    "ValidationError",
    "Waiting",
]
