"""The wire protocol: parsing client frames and building server messages.

Pure functions over data; nothing here does I/O. docs/protocol.md is the contract.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from streamer.config import MAX_MESSAGE_BYTES
from streamer.errors import ErrorCode, StreamerError

ACTION_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
#: Nesting deeper than this is refused before any handler sees it.
MAX_JSON_DEPTH = 32

PING = "ping"
STATUS = "status"
SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
CANCEL = "cancel"
WATCH = "watch"
SYSTEM_ACTIONS = frozenset({PING, STATUS, SUBSCRIBE, UNSUBSCRIBE, CANCEL, WATCH})
REQUEST_ACTIONS = (STATUS, SUBSCRIBE, UNSUBSCRIBE, CANCEL, WATCH)
#: System actions that name a `topic` (of the caller's tenant) instead of a `request_id`.
TOPIC_ACTIONS = (SUBSCRIBE, UNSUBSCRIBE)
#: `metadata` limits: entries, key length, value length.
MAX_METADATA_ENTRIES = 32
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 1024


@dataclass(frozen=True)
class ClientMessage:
    """One validated client frame."""

    action: str
    id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    #: `request_id` of the system actions that name a request.
    request_id: str | None = None
    #: The owner of that request when it is not the caller (needs a tenant-wide permission).
    user_id: str | None = None
    #: `topic` of a `subscribe`/`unsubscribe` that names a topic instead of a request.
    topic: str | None = None

    @property
    def is_system(self) -> bool:
        return self.action in SYSTEM_ACTIONS


def now_ms() -> int:
    """Integer milliseconds since the Unix epoch, the protocol's timestamp unit."""
    return int(time.time() * 1000)


def _invalid(message: str, **details: Any) -> StreamerError:
    return StreamerError(ErrorCode.INVALID_MESSAGE, message, details=details or None)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
#: `encode`'s encoder, made once rather than by `json.dumps` for each message.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping early once past `limit`.

    Level by level: the containers of one level, then their children."""
    depth = 0
    level = [value]
    while True:
        containers = [item for item in level if isinstance(item, (dict, list))]
        if not containers:
            return depth
        depth += 1
        if depth > limit:
            return depth
        level = [
            child
            for container in containers
            for child in (container.values() if isinstance(container, dict) else container)
        ]


def parse_client_message(body: str | bytes | None) -> ClientMessage:
    """Validate a client frame against docs/protocol.md section 2.

    Raises `StreamerError` with `PAYLOAD_TOO_LARGE` or `INVALID_MESSAGE`;
    unknown top-level fields are ignored.
    """
    if body is None:
        raise _invalid("message is empty")
    # ASCII text with no NUL where `json.detect_encoding` looks is its own UTF-8 and is
    # read as UTF-8: the text itself, without encoding it and decoding it back.
    plain = isinstance(body, str) and body.isascii() and "\x00" not in body[:4]
    raw = body if plain else body.encode("utf-8") if isinstance(body, str) else body
    if len(raw) > MAX_MESSAGE_BYTES:
        raise StreamerError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"message is {len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}",
            details={"limit_bytes": MAX_MESSAGE_BYTES},
        )
    try:
        # What `json.loads(raw, parse_constant=_reject_constant)` does, with one decoder
        # made once instead of one per frame (the larger part of a small frame's parse).
        text = (
            raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw), "surrogatepass")
        )
        data = _DECODER.decode(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _invalid("message is not valid JSON") from None
    if not isinstance(data, dict):
        raise _invalid("message must be a JSON object")
    # Each level of nesting opens with a bracket of its own: text with few brackets is shallow.
    if (
        text.count("{") + text.count("[") > MAX_JSON_DEPTH
        and _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH
    ):
        raise _invalid(f"message nests deeper than {MAX_JSON_DEPTH} levels")

    action = data.get("action")
    if not isinstance(action, str) or not ACTION_PATTERN.fullmatch(action):
        raise _invalid("`action` must be 1-64 characters of A-Z a-z 0-9 _ . -", field="action")
    client_id = data.get("id")
    if client_id is not None and (
        not isinstance(client_id, str) or not ID_PATTERN.fullmatch(client_id)
    ):
        raise _invalid("`id` must be 1-128 characters of A-Z a-z 0-9 _ . : -", field="id")
    payload = data.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise _invalid("`payload` must be an object", field="payload")
    metadata = data.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _invalid("`metadata` must be an object of strings", field="metadata")
    if len(metadata) > MAX_METADATA_ENTRIES or any(
        len(k) > MAX_METADATA_KEY or len(v) > MAX_METADATA_VALUE for k, v in metadata.items()
    ):
        raise StreamerError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"`metadata` is limited to {MAX_METADATA_ENTRIES} entries, keys of "
            f"{MAX_METADATA_KEY} and values of {MAX_METADATA_VALUE} characters",
            details={"field": "metadata"},
        )

    request_id = user_id = topic = None
    if action in TOPIC_ACTIONS and "topic" in data and "request_id" not in data:
        topic = data.get("topic")
        if not isinstance(topic, str) or not ID_PATTERN.fullmatch(topic):
            raise _invalid("`topic` must be 1-128 characters of A-Z a-z 0-9 _ . : -", field="topic")
    elif action in REQUEST_ACTIONS:
        request_id = data.get("request_id")
        if not isinstance(request_id, str) or not ID_PATTERN.fullmatch(request_id):
            raise _invalid(
                f"`{action}` needs a `request_id` of 1-128 characters of A-Z a-z 0-9 _ . : -",
                field="request_id",
            )
        user_id = data.get("user_id")
        if user_id is not None and (
            not isinstance(user_id, str) or not ID_PATTERN.fullmatch(user_id)
        ):
            raise _invalid(
                "`user_id` must be 1-128 characters of A-Z a-z 0-9 _ . : -", field="user_id"
            )
    return ClientMessage(
        action=action,
        id=client_id,
        payload=payload,
        metadata=metadata,
        request_id=request_id,
        user_id=user_id,
        topic=topic,
    )


def client_id_of(body: str | bytes | None) -> str | None:
    """The `id` of a frame that failed validation, if one can be read safely.

    Lets an `error` answer carry the `request_id` the client chose.
    """
    try:
        data = json.loads(body or "", parse_constant=_reject_constant)
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
        return None
    if isinstance(data, dict):
        candidate = data.get("id")
        if isinstance(candidate, str) and ID_PATTERN.fullmatch(candidate):
            return candidate
    return None


def encode(message: dict[str, Any]) -> str:
    """Serialise a server message compactly: UTF-8 text, no NaN or infinities."""
    return _ENCODER.encode(message)


def error_message(error: StreamerError, request_id: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "error", "error": error.to_dict()}
    if request_id is not None:
        message["request_id"] = request_id
    return message


def response_message(request_id: str, *, data: Any = None, error: dict | None = None) -> dict:
    message: dict[str, Any] = {"type": "response", "request_id": request_id}
    if error is None:
        message.update(success=True, data=data)
    else:
        message.update(success=False, error=error)
    return message


def acknowledgment_message(request_id: str, estimated_duration_ms: int) -> dict[str, Any]:
    return {
        "type": "acknowledgment",
        "request_id": request_id,
        "status": "QUEUED",
        "estimated_duration_ms": estimated_duration_ms,
    }


def progress_message(
    request_id: str,
    seq: int,
    percentage: float,
    message: str,
    metadata: dict[str, Any] | None,
    timestamp: int,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "progress",
        "request_id": request_id,
        "seq": seq,
        "percentage": percentage,
        "message": message,
        "timestamp": timestamp,
    }
    if metadata:
        body["metadata"] = metadata
    return body


def complete_message(
    request_id: str,
    seq: int,
    status: str,
    *,
    result: Any = None,
    error: dict[str, Any] | None = None,
    timestamp: int,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "complete",
        "request_id": request_id,
        "seq": seq,
        "status": status,
        "timestamp": timestamp,
    }
    if status == "COMPLETED":
        body["result"] = result
    else:
        body["error"] = error
    return body


def pong_message() -> dict[str, Any]:
    return {"type": "pong", "timestamp": now_ms()}


def status_message(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {"type": "status", "request": snapshot}


def unsubscribed_message(request_id: str) -> dict[str, Any]:
    return {"type": "unsubscribed", "request_id": request_id}


def watch_token_message(request_id: str, token: str, expires_at: int) -> dict[str, Any]:
    return {
        "type": "watch_token",
        "request_id": request_id,
        "token": token,
        "expires_at": expires_at,
    }
