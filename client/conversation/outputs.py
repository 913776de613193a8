"""What the conversation asks of its I/O layer and tells its application.

Every input returns one `Output`: `io` for the I/O layer to carry out in
order, `events` for the application's callbacks, `results` for the calls that
ended, `notes` for a log. `to_json` gives the shape the conversation vectors compare.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from client.errors import StreamerError
from client.messages import Notification, Progress

Handle = Hashable


@dataclass(frozen=True)
class FetchToken:
    """Call the token provider; answer with `token()` or `token_failed()`."""

    def to_json(self) -> dict[str, Any]:
        return {"do": "fetch_token"}


@dataclass(frozen=True)
class Open:
    """Open connection `conn` with `token`; answered by `opened`, `refused` or `unreachable`."""

    conn: int
    token: str

    def to_json(self) -> dict[str, Any]:
        return {"do": "open", "conn": self.conn, "token": self.token}


@dataclass(frozen=True)
class Send:
    """Send `text` (one JSON message) on connection `conn`."""

    conn: int
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"do": "send", "conn": self.conn, "message": json.loads(self.text)}


@dataclass(frozen=True)
class Close:
    """Close connection `conn`; nothing it says matters any more."""

    conn: int

    def to_json(self) -> dict[str, Any]:
        return {"do": "close", "conn": self.conn}


IO = FetchToken | Open | Send | Close


@dataclass(frozen=True)
class StateChanged:
    """The client's state changed (`disconnected`/`suspended` also after each failed attempt)."""

    state: str
    retry_in_ms: int | None = None
    error: StreamerError | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": self.state}
        if self.retry_in_ms is not None:
            data["retry_in_ms"] = self.retry_in_ms
        if self.error is not None:
            data["code"] = self.error.code
        return data


@dataclass(frozen=True)
class ProgressEvent:
    """A new `progress` for the call or subscribe `handle`."""

    handle: Handle
    progress: Progress

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "on_progress",
            "handle": self.handle,
            "request_id": self.progress.request_id,
            "seq": self.progress.seq,
            "percentage": self.progress.percentage,
            "message": self.progress.message,
        }


@dataclass(frozen=True)
class NotificationEvent:
    """A notification that is news: the client's `notification` event."""

    notification: Notification

    def to_json(self) -> dict[str, Any]:
        return {"event": "notification", "notification": self.notification.to_json()}


@dataclass(frozen=True)
class TopicNotification:
    """A notification of the topic subscribed with `handle`: its `on_notification`."""

    handle: Handle
    notification: Notification

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "on_notification",
            "handle": self.handle,
            "notification": self.notification.to_json(),
        }


Event = StateChanged | ProgressEvent | NotificationEvent | TopicNotification


@dataclass(frozen=True)
class Ok:
    """The call `handle` ended with `value`."""

    handle: Handle
    value: Any

    def to_json(self) -> dict[str, Any]:
        value = self.value.to_json() if hasattr(self.value, "to_json") else self.value
        return {"handle": self.handle, "ok": value}


@dataclass(frozen=True)
class Failed:
    """The call `handle` ended with `error`."""

    handle: Handle
    error: StreamerError

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.error.code}
        if self.error.request_status is not None:
            error["request_status"] = self.error.request_status
        return {"handle": self.handle, "error": error}


Result = Ok | Failed


@dataclass
class Output:
    """What one input produced."""

    io: list[IO] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    # What a log should say about the decisions taken (not compared by the vectors).
    notes: list[str] = field(default_factory=list)
