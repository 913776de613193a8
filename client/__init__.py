"""Python client for Streamer: an asyncio library and a command line (`python -m client`).

async with StreamerClient(url, token_or_provider) as client:
    result = await client.call("generate_report", {"pages": 5}, on_progress=print)
    await client.subscribe_topic("job-1", on_notification=print)
"""

from client.connection import (
    DEFAULT_HEARTBEAT_SECONDS,
    EVENTS,
    NotificationCallback,
    ProgressCallback,
    StreamerClient,
    TokenProvider,
)
from client.conversation import StateChanged
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
    TokenFailed,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from client.messages import Completion, Notification, Progress, RequestSnapshot
from client.reconnect import ReconnectPolicy

__version__ = "0.2.0"

__all__ = [
    "DEFAULT_HEARTBEAT_SECONDS",
    "ERROR_TYPES",
    "EVENTS",
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
    "Notification",
    "NotificationCallback",
    "PayloadTooLarge",
    "ProcessingFailed",
    "Progress",
    "ProgressCallback",
    "RateLimited",
    "ReconnectPolicy",
    "RequestCancelled",
    "RequestSnapshot",
    "RequestTimeout",
    "StateChanged",
    "StreamerClient",
    "StreamerError",
    "SubscriptionEnded",
    "TokenFailed",
    "TokenProvider",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
    "__version__",
]
