"""Typed views over the events Lambda delivers to Streamer's functions.

Each view wraps the documented event dict as it is, so the same code reads
events from API Gateway, the DynamoDB stream mapping and the local stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Identity:
    """Who is calling, as the authorizer established it."""

    user_id: str
    tenant_id: str
    permissions: frozenset[str] = frozenset()
    #: Set for a connection opened with a watch token: the one request it may watch.
    watch_request: str | None = None

    def to_context(self) -> dict[str, str]:
        """The authorizer's `context`: API Gateway accepts only strings, numbers, booleans."""
        context = {
            "user_id": self.user_id,
            "tenant_id": self.tenant_id,
            "permissions": ",".join(sorted(self.permissions)),
        }
        if self.watch_request is not None:
            context["watch_request"] = self.watch_request
        return context

    @classmethod
    def from_context(cls, context: Mapping[str, Any] | None) -> Identity | None:
        """Read an identity from `requestContext.authorizer`; None if it is incomplete."""
        if not context:
            return None
        user_id, tenant_id = context.get("user_id"), context.get("tenant_id")
        if not isinstance(user_id, str) or not user_id:
            return None
        if not isinstance(tenant_id, str) or not tenant_id:
            return None
        raw = context.get("permissions") or ""
        permissions = frozenset(p for p in str(raw).split(",") if p)
        watch_request = context.get("watch_request")
        return cls(
            user_id=user_id,
            tenant_id=tenant_id,
            permissions=permissions,
            watch_request=str(watch_request) if watch_request else None,
        )


def _headers(raw: Mapping[str, Any] | None) -> dict[str, str]:
    """Header names are case-insensitive; API Gateway passes them as the client sent them."""
    return {str(k).lower(): str(v) for k, v in (raw or {}).items() if v is not None}


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (names lower-cased)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _body(event: Mapping[str, Any]) -> str | None:
    body = event.get("body")
    if body is None:
        return None
    if event.get("isBase64Encoded"):
        import base64

        return base64.b64decode(body).decode("utf-8", errors="replace")
    return str(body)


class AuthorizerEvent:
    """A WebSocket `$connect` REQUEST authorizer event."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.raw = event

    @property
    def method_arn(self) -> str:
        return str(self.raw.get("methodArn", ""))

    @property
    def headers(self) -> dict[str, str]:
        return _headers(self.raw.get("headers"))

    @property
    def query_token(self) -> str | None:
        return (self.raw.get("queryStringParameters") or {}).get("token") or None

    @property
    def header_token(self) -> str | None:
        return bearer_token(self.headers)

    @property
    def connection_id(self) -> str | None:
        return (self.raw.get("requestContext") or {}).get("connectionId")


class WebSocketEvent:
    """A CONNECT, MESSAGE or DISCONNECT proxy event of a WebSocket API."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.raw = event
        self.request_context: Mapping[str, Any] = event.get("requestContext") or {}

    @property
    def connection_id(self) -> str:
        return str(self.request_context.get("connectionId", ""))

    @property
    def event_type(self) -> str:
        return str(self.request_context.get("eventType", ""))

    @property
    def route_key(self) -> str:
        return str(self.request_context.get("routeKey", ""))

    @property
    def connected_at(self) -> int | None:
        value = self.request_context.get("connectedAt")
        return int(value) if isinstance(value, int | float) else None

    @property
    def body(self) -> str | None:
        return _body(self.raw)

    @property
    def identity(self) -> Identity | None:
        return Identity.from_context(self.request_context.get("authorizer"))

    def management_endpoint(self, region: str, overrides: str | None = None) -> str:
        """The `@connections` API base URL of the API this connection came through.

        `overrides` is `STREAMER_MANAGEMENT_ENDPOINT` (`streamer.endpoints`).
        """
        from streamer import endpoints

        return endpoints.connection_endpoint(
            self.request_context, region, endpoints.parse_overrides(overrides)
        )


class HttpEvent:
    """An HTTP API proxy event, payload format 2.0."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.raw = event
        self.request_context: Mapping[str, Any] = event.get("requestContext") or {}

    @property
    def method(self) -> str:
        return str((self.request_context.get("http") or {}).get("method", "")).upper()

    @property
    def path(self) -> str:
        return str(self.raw.get("rawPath") or (self.request_context.get("http") or {}).get("path"))

    @property
    def request_id_parameter(self) -> str | None:
        """`{id}` of `/requests/{id}`: the path parameter, or the path's last segment."""
        value = (self.raw.get("pathParameters") or {}).get("id")
        if value:
            return str(value)
        parts = self.path.strip("/").split("/")
        return parts[1] if len(parts) == 2 and parts[0] == "requests" and parts[1] else None

    @property
    def query(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.raw.get("queryStringParameters") or {}).items()}

    @property
    def bearer_token(self) -> str | None:
        return bearer_token(_headers(self.raw.get("headers")))

    @property
    def body(self) -> str | None:
        return _body(self.raw)


@dataclass(frozen=True)
class StreamRecord:
    """One record of a DynamoDB Streams event, images in raw AttributeValue JSON."""

    event_name: str
    sequence_number: str
    keys: Mapping[str, Any]
    new_image: Mapping[str, Any] | None
    old_image: Mapping[str, Any] | None
    aws_region: str
    event_source_arn: str

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> StreamRecord:
        data = record.get("dynamodb") or {}
        return cls(
            event_name=str(record.get("eventName", "")),
            sequence_number=str(data.get("SequenceNumber", "")),
            keys=data.get("Keys") or {},
            new_image=data.get("NewImage"),
            old_image=data.get("OldImage"),
            aws_region=str(record.get("awsRegion", "")),
            event_source_arn=str(record.get("eventSourceARN", "")),
        )

    def new_value(self, name: str) -> str | None:
        """A string attribute of the new image."""
        attribute = (self.new_image or {}).get(name) or {}
        value = attribute.get("S")
        return value if isinstance(value, str) else None

    @property
    def item_key(self) -> tuple[tuple[str, str], ...]:
        """The item's key, to keep records of one item in order."""
        return tuple(sorted((k, str(v)) for k, v in self.keys.items()))


def stream_records(event: Mapping[str, Any]) -> list[StreamRecord]:
    return [StreamRecord.from_record(r) for r in event.get("Records") or []]
