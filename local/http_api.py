"""The HTTP API on the stack's HTTP port, as API Gateway's HTTP API serves it.

Two routes, as the Pulumi component deploys them, both behind the same Lambda
REQUEST authorizer as the WebSocket `$connect` (payload format 2.0, simple
responses, identity source `$request.header.Authorization`), and CORS from the
stack's `streamer.cors.CorsRules`. What API Gateway does, and so what this does
(docs.aws.amazon.com/apigateway/latest/developerguide/http-api-lambda-authorizer.html
and http-api-cors.html):

- a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is
  answered here, 204, without the authorizer or the function; CORS headers only
  for an allowed origin;
- no `Authorization` header: 401 `{"message":"Unauthorized"}`, the authorizer is
  not invoked; `isAuthorized: false`: 403 `{"message":"Forbidden"}`; an authorizer
  that fails or answers in another shape: 500; the function is not invoked;
- an allowed request becomes a payload-format-2.0 event whose
  `requestContext.authorizer.lambda` is the authorizer's `context`;
- CORS headers the function returns are dropped, the configured ones added.

Functions are invoked from the HTTP server's request thread, never the event
loop, so a long poll holds only its own thread.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.functions import FunctionError, LambdaFunction
from local.management import HttpResponse
from streamer import cors
from streamer.cors import CorsRules

POST_REQUESTS = "POST /requests"
GET_REQUEST = "GET /requests/{id}"
API_ID = "local"
STAGE = "$default"
#: The authorizer's identity source, as `components/http_api.py` configures it.
IDENTITY_HEADER = "authorization"
#: API Gateway's own answers, which never reach the function.
UNAUTHORIZED = HttpResponse(
    401, b'{"message":"Unauthorized"}', {"Content-Type": "application/json"}
)
FORBIDDEN = HttpResponse(403, b'{"message":"Forbidden"}', {"Content-Type": "application/json"})
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


def _request_context(
    method: str, path: str, headers: Mapping[str, str], route_key: str, account_id: str
) -> dict[str, Any]:
    now = time.time()
    host = headers.get("host", "localhost")
    return {
        "accountId": account_id,
        "apiId": API_ID,
        "domainName": host,
        "domainPrefix": host.split(".")[0],
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": uuid.uuid4().hex[:16],
        "routeKey": route_key,
        "stage": STAGE,
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }


def http_event(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    route_key: str,
    path_parameters: dict[str, str],
    *,
    account_id: str,
) -> dict[str, Any]:
    """A payload-format-2.0 event, shaped like API Gateway's (header names lower-cased)."""
    url = urlsplit(target)
    context = _request_context(method, url.path, headers, route_key, account_id)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": url.path,
        "rawQueryString": url.query,
        "headers": dict(headers),
        "requestContext": context,
        "isBase64Encoded": False,
    }
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"] = body.decode("utf-8", errors="replace")
    return event


def authorizer_event(
    event: Mapping[str, Any], *, region: str, account_id: str
) -> dict[str, Any] | None:
    """The v2 REQUEST authorizer event for an HTTP event; None without the identity source."""
    identity = event.get("headers", {}).get(IDENTITY_HEADER)
    if not identity:
        return None
    context = event["requestContext"]
    method, path = context["http"]["method"], context["http"]["path"]
    route_arn = f"arn:aws:execute-api:{region}:{account_id}:{API_ID}/{STAGE}/{method}{path}"
    shared = ("routeKey", "rawPath", "rawQueryString", "headers", "queryStringParameters")
    request = {key: event[key] for key in (*shared, "pathParameters") if key in event}
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": route_arn,
        "identitySource": [identity],
        **request,
        "requestContext": context,
    }


def authorization(answer: object) -> HttpResponse | dict[str, Any]:
    """How API Gateway reads a simple response: the context to pass on, or its own answer."""
    if not isinstance(answer, dict) or not isinstance(answer.get("isAuthorized"), bool):
        return INTERNAL
    context = answer.get("context") or {}
    if not isinstance(context, dict):
        return INTERNAL
    return context if answer["isAuthorized"] else FORBIDDEN


class HttpApi:
    """Answers `/requests` routes (and their preflights); None for other paths."""

    def __init__(
        self,
        function: LambdaFunction,
        authorizer: LambdaFunction,
        region: str,
        account_id: str,
        cors_rules: CorsRules | None = None,
    ) -> None:
        self._function = function
        self._authorizer = authorizer
        self._region = region
        self._account_id = account_id
        self._cors = cors_rules or CorsRules()

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> HttpResponse | None:
        headers = {name.lower(): value for name, value in headers.items()}
        path = urlsplit(target).path
        if self._cors.enabled and cors.is_preflight(method, headers):
            if route_of(headers["access-control-request-method"].upper(), path) is None:
                return None
            return HttpResponse(204, b"", cors.preflight_headers(self._cors, headers))
        route = route_of(method, path)
        if route is None:
            return None
        answer = self._answer(method, target, headers, body, *route)
        if not self._cors.enabled:
            return answer
        return HttpResponse(
            answer.status,
            answer.body,
            {
                **cors.without_cors_headers(answer.headers),
                **cors.response_headers(self._cors, headers),
            },
        )

    def _authorize(self, event: dict[str, Any]) -> HttpResponse | dict[str, Any]:
        request = authorizer_event(event, region=self._region, account_id=self._account_id)
        if request is None:
            return UNAUTHORIZED
        try:
            return authorization(self._authorizer.invoke(request))
        except FunctionError:
            return INTERNAL

    def _answer(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        route_key: str,
        path_parameters: dict[str, str],
    ) -> HttpResponse:
        event = http_event(
            method,
            target,
            headers,
            body,
            route_key,
            path_parameters,
            account_id=self._account_id,
        )
        authorized = self._authorize(event)
        if isinstance(authorized, HttpResponse):
            return authorized
        event["requestContext"]["authorizer"] = {"lambda": authorized}
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
