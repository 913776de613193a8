"""Typed views of Streamer's wire messages (docs/protocol.md sections 2 and 3).

Pure data: encoding what the client sends and parsing what the server sends
never touches a socket, so these rules are tested on their own.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from client.errors import ErrorInfo, PayloadTooLarge

# The gateway closes the connection (code 1009) on a bigger message, so the
# client refuses to send one instead of losing its connection.
MAX_MESSAGE_BYTES = 128 * 1024

TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})

_ACTION = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def new_request_id() -> str:
    """A fresh client request id that fits the protocol's `id` rules."""
    return f"py-{uuid.uuid4().hex}"


def is_valid_request_id(value: str) -> bool:
    """Whether `value` is 1-128 characters of `[A-Za-z0-9_.:-]`."""
    return _REQUEST_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Acknowledgment:
    """An async request was accepted and stored; its `complete` will follow."""

    request_id: str
    estimated_duration_ms: int | None


@dataclass(frozen=True)
class Response:
    """A sync request finished: `data` when `success`, otherwise `error`."""

    request_id: str
    success: bool
    data: Any
    error: ErrorInfo | None


@dataclass(frozen=True)
class Progress:
    """A running async request's progress, as handed to `on_progress` callbacks."""

    request_id: str
    seq: int
    percentage: float
    message: str
    metadata: dict[str, Any]
    timestamp: int | None


@dataclass(frozen=True)
class Completion:
    """How an async request ended: `status` COMPLETED with `result`, else `error`."""

    request_id: str
    seq: int | None
    status: str
    result: Any
    error: ErrorInfo | None
    timestamp: int | None

    def to_json(self) -> dict[str, Any]:
        """The outcome as plain JSON (for printing)."""
        data: dict[str, Any] = {"request_id": self.request_id, "status": self.status}
        if self.error is not None:
            data["error"] = self.error.to_json()
        else:
            data["result"] = self.result
        return data


@dataclass(frozen=True)
class Rejection:
    """The server's `error` message: the message was refused and nothing was stored.

    `request_id` echoes the `id` of the refused message when it had one.
    """

    request_id: str | None
    error: ErrorInfo


@dataclass(frozen=True)
class Pong:
    """The answer to `ping`."""


@dataclass(frozen=True)
class RequestSnapshot:
    """A request's stored state, as the `status` answer carries it."""

    request_id: str
    action: str
    status: str
    progress: float | None
    progress_message: str | None
    created_at: int | None
    updated_at: int | None
    result: Any
    error: ErrorInfo | None

    @property
    def is_terminal(self) -> bool:
        """Whether the request has ended (COMPLETED, FAILED or CANCELLED)."""
        return self.status in TERMINAL_STATUSES

    def completion(self) -> Completion:
        """How a terminal request ended, as its `complete` would say (without `seq`)."""
        if not self.is_terminal:
            raise ValueError(f"request {self.request_id} has not ended: {self.status}")
        return Completion(
            self.request_id, None, self.status, self.result, self.error, self.updated_at
        )

    def to_json(self) -> dict[str, Any]:
        """The snapshot as the protocol writes it."""
        data: dict[str, Any] = {
            "request_id": self.request_id,
            "action": self.action,
            "status": self.status,
            "progress": self.progress,
            "progress_message": self.progress_message,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if self.error is not None:
            data["error"] = self.error.to_json()
        elif self.is_terminal:
            data["result"] = self.result
        return data


@dataclass(frozen=True)
class Unsubscribed:
    """The answer to `unsubscribe`: of a request (`request_id`) or of a topic (`topic`)."""

    request_id: str | None
    topic: str | None = None


@dataclass(frozen=True)
class Subscribed:
    """The answer to a topic's `subscribe` when the topic has no retained message."""

    topic: str


@dataclass(frozen=True)
class Notification:
    """A published message: to a topic this connection follows, or (no `topic`) to its user.

    A topic's retained notification also answers that topic's `subscribe`.
    """

    topic: str | None
    event: str
    data: Any
    timestamp: int | None

    def to_json(self) -> dict[str, Any]:
        """The notification as the server sends it."""
        message: dict[str, Any] = {"type": "notification"}
        if self.topic is not None:
            message["topic"] = self.topic
        message.update(event=self.event, data=self.data)
        if self.timestamp is not None:
            message["timestamp"] = self.timestamp
        return message


ServerMessage = (
    Acknowledgment
    | Response
    | Progress
    | Completion
    | Rejection
    | Pong
    | RequestSnapshot
    | Unsubscribed
    | Subscribed
    | Notification
)


def encode_request(
    action: str,
    request_id: str,
    payload: Mapping[str, Any] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """The JSON text of an application request.

    Raises ValueError when `action`, `request_id` or `metadata` break the
    protocol's rules or a value is not JSON (NaN), and `PayloadTooLarge` over
    128 KiB.
    """
    if _ACTION.fullmatch(action) is None:
        raise ValueError(f"action must be 1-64 characters of [A-Za-z0-9_.-]: {action!r}")
    message: dict[str, Any] = {"action": action, "id": _checked_id(request_id)}
    message["payload"] = dict(payload) if payload is not None else {}
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("metadata must map strings to strings")
        message["metadata"] = dict(metadata)
    return _dumps(message)


def encode_system(
    action: str, message_id: str, request_id: str | None = None, *, topic: str | None = None
) -> str:
    """The JSON text of a system action (`ping`, `status`, `subscribe`, ...).

    `message_id` is the message's own `id`, so that an `error` answering it
    can be told apart from the answers about `request_id`. `subscribe` and
    `unsubscribe` name a `topic` instead of a request (docs/notifications.md).
    """
    message: dict[str, Any] = {"action": action, "id": _checked_id(message_id)}
    if request_id is not None:
        message["request_id"] = _checked_id(request_id)
    if topic is not None:
        if not is_valid_request_id(topic):
            raise ValueError(f"topic must be 1-128 characters of [A-Za-z0-9_.:-]: {topic!r}")
        message["topic"] = topic
    return _dumps(message)


def _checked_id(value: str) -> str:
    if not isinstance(value, str) or not is_valid_request_id(value):
        raise ValueError(f"request id must be 1-128 characters of [A-Za-z0-9_.:-]: {value!r}")
    return value


def _dumps(message: dict[str, Any]) -> str:
    # NaN and Infinity are not JSON; the server would refuse the message.
    text = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    size = len(text.encode("utf-8"))
    if size > MAX_MESSAGE_BYTES:
        raise PayloadTooLarge(
            "PAYLOAD_TOO_LARGE",
            f"message of {size} bytes is over the {MAX_MESSAGE_BYTES}-byte limit",
            {"size": size, "limit": MAX_MESSAGE_BYTES},
        )
    return text


def parse_server_message(text: str | bytes) -> ServerMessage | None:
    """Read one server message; None for anything this client does not know.

    Unknown types are skipped rather than fatal so that a newer server can add
    message types without breaking older clients.
    """
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    request_id = value.get("request_id")
    if kind is None and isinstance(value.get("message"), str):
        # API Gateway's own answer when a route's integration fails or times
        # out: {"message": "Internal server error", "connectionId", "requestId"},
        # where requestId is the gateway's, so it names no message of ours.
        return Rejection(None, ErrorInfo("INTERNAL_ERROR", value["message"]))
    try:
        if kind == "pong":
            return Pong()
        if kind == "unsubscribed":
            topic = value.get("topic")
            return Unsubscribed(
                request_id if isinstance(request_id, str) else None,
                topic if isinstance(topic, str) else None,
            )
        if kind == "subscribed":
            return Subscribed(value["topic"]) if isinstance(value.get("topic"), str) else None
        if kind == "notification":
            return _parse_notification(value)
        if kind == "error":
            return Rejection(
                request_id if isinstance(request_id, str) else None,
                ErrorInfo.from_json(value.get("error")),
            )
        if kind == "status":
            return _parse_snapshot(value["request"])
        if not isinstance(request_id, str):
            return None
        if kind == "acknowledgment":
            estimate = value.get("estimated_duration_ms")
            return Acknowledgment(request_id, estimate if isinstance(estimate, int) else None)
        if kind == "response":
            success = value.get("success") is True
            error = None if success else ErrorInfo.from_json(value.get("error"))
            return Response(request_id, success, value.get("data"), error)
        if kind == "progress":
            metadata = value.get("metadata")
            return Progress(
                request_id=request_id,
                seq=int(value["seq"]),
                percentage=float(value.get("percentage", 0)),
                message=str(value.get("message", "")),
                metadata=metadata if isinstance(metadata, dict) else {},
                timestamp=_optional_int(value.get("timestamp")),
            )
        if kind == "complete":
            status = str(value["status"])
            error = None if status == "COMPLETED" else ErrorInfo.from_json(value.get("error"))
            return Completion(
                request_id=request_id,
                seq=_optional_int(value.get("seq")),
                status=status,
                result=value.get("result"),
                error=error,
                timestamp=_optional_int(value.get("timestamp")),
            )
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _parse_snapshot(value: Any) -> RequestSnapshot:
    if not isinstance(value, dict):
        raise TypeError("status without a request object")
    progress = value.get("progress")
    error = value.get("error")
    return RequestSnapshot(
        request_id=str(value["request_id"]),
        action=str(value.get("action", "")),
        status=str(value["status"]),
        progress=float(progress) if isinstance(progress, int | float) else None,
        progress_message=value.get("progress_message"),
        created_at=_optional_int(value.get("created_at")),
        updated_at=_optional_int(value.get("updated_at")),
        result=value.get("result"),
        error=ErrorInfo.from_json(error) if error is not None else None,
    )


def _parse_notification(value: dict[str, Any]) -> Notification | None:
    topic, event = value.get("topic"), value.get("event")
    if not isinstance(event, str) or (topic is not None and not isinstance(topic, str)):
        return None
    return Notification(topic, event, value.get("data"), _optional_int(value.get("timestamp")))


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
