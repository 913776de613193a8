"""Where a connection's `@connections` callbacks go: decided once, at `$connect`, and stored.

AWS documents the callback URL as
`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}/@connections/{connection_id}`
(API Gateway developer guide, "Use @connections commands in your backend service",
apigateway-how-to-call-websocket-api-connections). It is built from the event's
`requestContext.apiId` and `stage` and the function's region, never from `domainName`:
behind a custom domain `domainName` is that domain while `stage` is still the API's
stage, not the base path (aws/chalice issue 1503, fixed in chalice PR 1539 the same
way), so `https://{domainName}/{stage}` names no management endpoint.

A stack whose APIs are not on AWS (the local stack) maps API ids to its own endpoints
(`STREAMER_MANAGEMENT_ENDPOINT`, `parse_overrides`); a connection of any other API keeps
its execute-api endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def execute_api_endpoint(api_id: str, region: str, stage: str) -> str:
    """The management API of one WebSocket API's stage."""
    return f"https://{api_id}.execute-api.{region}.amazonaws.com/{stage}"


def parse_overrides(text: str | None) -> dict[str, str]:
    """`api_id=URL[,api_id=URL...]` as a mapping; raises ValueError for any other form.

    A bare URL is refused: it would send every API's callbacks to one place.
    """
    overrides: dict[str, str] = {}
    for entry in (text or "").split(","):
        if not entry.strip():
            continue
        api_id, separator, url = entry.partition("=")
        api_id, url = api_id.strip(), url.strip().rstrip("/")
        if (
            not separator
            or not api_id
            or "/" in api_id
            or not url.startswith(("http://", "https://"))
        ):
            raise ValueError(
                f"management endpoint override {entry.strip()!r} is not API_ID=http(s)://..."
            )
        overrides[api_id] = url
    return overrides


def connection_endpoint(
    request_context: Mapping[str, Any], region: str, overrides: Mapping[str, str] | None = None
) -> str:
    """The `@connections` base URL of the API a WebSocket event came through."""
    api_id = str(request_context.get("apiId", ""))
    if overrides and api_id in overrides:
        return overrides[api_id]
    return execute_api_endpoint(api_id, region, str(request_context.get("stage", "")))
