"""Python client for Streamer: an asyncio library and a command line (`python -m client`).

async with StreamerClient(url, token) as client:
    result = await client.call("generate_report", {"pages": 5}, on_progress=print)
"""

from client.connection import DEFAULT_HEARTBEAT_SECONDS, ProgressCallback, StreamerClient
from client.errors import (
    ERROR_TYPES,
    Conflict,
    ConnectionFailed,
    ConnectionLost,
    ConnectionRefused,
    ErrorInfo,
    Forbidden,
    InternalError,
    InvalidAction,
    InvalidMessage,
    NoAnswer,
    NotFound,
    NotSynchronous,
    PayloadTooLarge,
    ProcessingFailed,
    RateLimited,
    RequestCancelled,
    RequestTimeout,
    StreamerError,
    SubscriptionEnded,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from client.messages import Completion, Progress, RequestSnapshot
from client.reconnect import ReconnectPolicy

__all__ = [
    "DEFAULT_HEARTBEAT_SECONDS",
    "ERROR_TYPES",
    "Completion",
    "Conflict",
    "ConnectionFailed",
    "ConnectionLost",
    "ConnectionRefused",
    "ErrorInfo",
    "Forbidden",
    "InternalError",
    "InvalidAction",
    "InvalidMessage",
    "NoAnswer",
    "NotFound",
    "NotSynchronous",
    "PayloadTooLarge",
    "ProcessingFailed",
    "Progress",
    "ProgressCallback",
    "RateLimited",
    "ReconnectPolicy",
    "RequestCancelled",
    "RequestSnapshot",
    "RequestTimeout",
    "StreamerClient",
    "StreamerError",
    "SubscriptionEnded",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
]
