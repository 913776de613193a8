"""The client's conversation with Streamer as a sans-I/O state machine.

`Conversation` decides; `client.connection.StreamerClient` does the I/O. The
vectors under `vectors/` (format in README.md) pin the behaviour for the
Python and the JS client alike.
"""

from client.conversation.machine import STATES, Conversation
from client.conversation.options import (
    GATEWAY_IDLE_TIMEOUT_MS,
    GATEWAY_MAX_CONNECTION_MS,
    Options,
)
from client.conversation.outputs import (
    IO,
    Close,
    Event,
    Failed,
    FetchToken,
    Handle,
    NotificationEvent,
    Ok,
    Open,
    Output,
    ProgressEvent,
    Result,
    Send,
    StateChanged,
    TopicNotification,
)
from client.conversation.timing import token_expiry_ms

__all__ = [
    "GATEWAY_IDLE_TIMEOUT_MS",
    "GATEWAY_MAX_CONNECTION_MS",
    "IO",
    "STATES",
    "Close",
    "Conversation",
    "Event",
    "Failed",
    "FetchToken",
    "Handle",
    "NotificationEvent",
    "Ok",
    "Open",
    "Options",
    "Output",
    "ProgressEvent",
    "Result",
    "Send",
    "StateChanged",
    "TopicNotification",
    "token_expiry_ms",
]
