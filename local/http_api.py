"""The HTTP API on the stack's HTTP port, as API Gateway's HTTP API serves it.

Two routes, as the Pulumi component deploys them: `POST /requests` behind a
JWT authorizer and `GET /requests/{id}` without one. The authorizer is
emulated with the stack's own trust (key or JWKS, issuer, audience): a token
it refuses is answered 401 `{"message":"Unauthorized"}` without invoking the
function, as on AWS; a valid one's claims go into the event the way API
Gateway renders them (every value a string, a list as `"[a b]"`).

Each request becomes a payload-format-2.0 event for the HTTP function,
invoked from the HTTP server's request thread, never the event loop, so a
long poll holds only its own thread.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt

from local.functions import FunctionError, LambdaFunction
from local.management import HttpResponse
from streamer.events import bearer_token

POST_REQUESTS = "POST /requests"
GET_REQUEST = "GET /requests/{id}"
#: API Gateway's own answers, which never reach the function.
UNAUTHORIZED = HttpResponse(
    401,
    b'{"message":"Unauthorized"}',
    {"Content-Type": "application/json", "www-authenticate": "Bearer"},
)
INTERNAL = HttpResponse(
    500, b'{"message":"Internal Server Error"}', {"Content-Type": "application/json"}
)


def route_of(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The route key and path parameters of a request; None if no route matches."""
    parts = path.strip("/").split("/")
    if method == "POST" and path.rstrip("/") == "/requests":
        return POST_REQUESTS, {}
    if method == "GET" and len(parts) == 2 and parts[0] == "requests" and parts[1]:
        return GET_REQUEST, {"id": unquote(parts[1])}
    return None


def authorizer_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """Claims as the JWT authorizer passes them to the integration: strings only."""
    rendered = {}
    for name, value in claims.items():
        if isinstance(value, list):
            rendered[name] = "[" + " ".join(str(v) for v in value) + "]"
        elif isinstance(value, bool):
            rendered[name] = str(value).lower()
        else:
            rendered[name] = str(value)
    return rendered


def http_event(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    route_key: str,
    path_parameters: dict[str, str],
    *,
    claims: dict[str, str] | None,
    region: str,
    account_id: str,
    host: str,
) -> dict[str, Any]:
    """A payload-format-2.0 event, shaped like API Gateway's."""
    url = urlsplit(target)
    now = time.time()
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    context: dict[str, Any] = {
        "accountId": account_id,
        "apiId": "local",
        "domainName": host,
        "domainPrefix": host.split(".")[0],
        "http": {
            "method": method,
            "path": url.path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": uuid.uuid4().hex[:16],
        "routeKey": route_key,
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if claims is not None:
        context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": url.path,
        "rawQueryString": url.query,
        "headers": dict(headers),
        "requestContext": context,
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"] = body.decode("utf-8", errors="replace")
    return event


class HttpApi:
    """Answers `/requests` routes through the HTTP function; None for other paths."""

    def __init__(
        self,
        function: LambdaFunction,
        verify: Callable[[str], object],
        region: str,
        account_id: str,
    ) -> None:
        self._function = function
        self._verify = verify
        self._region = region
        self._account_id = account_id

    def _authorize(self, headers: Mapping[str, str]) -> dict[str, str] | None:
        token = bearer_token(headers)
        if token is None:
            return None
        try:
            self._verify(token)
        except Exception:
            return None
        return authorizer_claims(jwt.decode(token, options={"verify_signature": False}))

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> HttpResponse | None:
        route = route_of(method, urlsplit(target).path)
        if route is None:
            return None
        route_key, path_parameters = route
        headers = {name.lower(): value for name, value in headers.items()}
        claims = None
        if route_key == POST_REQUESTS:
            claims = self._authorize(headers)
            if claims is None:
                return UNAUTHORIZED
        event = http_event(
            method,
            target,
            headers,
            body,
            route_key,
            path_parameters,
            claims=claims,
            region=self._region,
            account_id=self._account_id,
            host=headers.get("host", "localhost"),
        )
        try:
            answer = self._function.invoke(event)
        except FunctionError:
            return INTERNAL
        if not isinstance(answer, dict):
            return INTERNAL
        body_text = answer.get("body") or ""
        if not isinstance(body_text, str):
            body_text = json.dumps(body_text)
        return HttpResponse(
            int(answer.get("statusCode", 200)),
            body_text.encode("utf-8"),
            {str(k): str(v) for k, v in (answer.get("headers") or {}).items()},
        )
