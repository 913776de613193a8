"""API Gateway WebSocket semantics as plain data: the events it sends, how it reads answers.

Everything here takes data and returns data, so the gateway's decisions are
tested without sockets. The shapes follow what API Gateway really sends
(AWS developer guide, "WebSocket API Lambda REQUEST authorizers" and the
Lambda proxy integration samples): a handler that works here works there.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import json
import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from websockets.frames import CloseCode

CONNECT_ROUTE = "$connect"
DISCONNECT_ROUTE = "$disconnect"
DEFAULT_ROUTE = "$default"

#: API Gateway's answer when a route's integration fails, sent on the socket.
INTERNAL_SERVER_ERROR = "Internal server error"
#: The one header of a `$connect` integration's answer API Gateway puts in the handshake
#: response (developer guide, websocket-connect-route-subprotocol).
SUBPROTOCOL_HEADER = "Sec-WebSocket-Protocol"


def new_id() -> str:
    """An id shaped like API Gateway's connection, request and message ids (`BFaT_fALIAMCKug=`).

    URL-safe alphabet, because connection ids travel in `@connections/{id}` paths.
    """
    return base64.urlsafe_b64encode(os.urandom(11)).decode("ascii")


def now_ms() -> int:
    return int(time.time() * 1000)


def deployed_identity_sources() -> tuple[str, ...]:
    """The `$connect` authorizer's identity sources: the Pulumi component's own definition.

    Imported when an `Api` is made, not with this module: `components.api` brings Pulumi
    (about half a second), and every spawned function worker imports the local stack's
    modules again.
    """
    from components.api import TOKEN_SOURCE

    return (TOKEN_SOURCE,)


@dataclass(frozen=True)
class Api:
    """The WebSocket API the gateway plays: what AWS puts in every requestContext."""

    region: str
    account_id: str = "123456789012"
    api_id: str = "local"
    stage: str = "local"
    identity_sources: tuple[str, ...] = field(default_factory=deployed_identity_sources)

    def method_arn(self, route_key: str) -> str:
        return (
            f"arn:aws:execute-api:{self.region}:{self.account_id}:"
            f"{self.api_id}/{self.stage}/{route_key}"
        )


@dataclass(frozen=True)
class Handshake:
    """What API Gateway knows about a connection from its upgrade request."""

    connection_id: str
    path: str
    headers: tuple[tuple[str, str], ...]
    source_ip: str
    domain_name: str
    connected_at: int = field(default_factory=now_ms)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[-1] if values else None

    @property
    def query(self) -> list[tuple[str, str]]:
        """The query string's parameters in order, blank values kept, as AWS decodes them."""
        return parse_qsl(urlsplit(self.path).query, keep_blank_values=True)

    @functools.cached_property
    def identity(self) -> dict:
        """`requestContext.identity`, the same for every event of the connection (read-only)."""
        identity = {"sourceIp": self.source_ip}
        user_agent = self.header("User-Agent")
        if user_agent is not None:
            identity["userAgent"] = user_agent
        return identity


def _request_time(epoch_ms: int) -> str:
    """`requestTime`, to the second: formatted once a second, not once a message."""
    global _last_request_time
    second = epoch_ms // 1000
    last = _last_request_time
    if last[0] == second:
        return last[1]
    text = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_ms / 1000))
    _last_request_time = (second, text)
    return text


#: The second `_request_time` formatted last, and its text (replaced whole: read by threads).
_last_request_time: tuple[int | None, str] = (None, "")


def _single_and_multi(pairs: list[tuple[str, str]]) -> tuple[dict, dict]:
    """API Gateway's two views of repeated names: the last value, and all values."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def _request_context(
    api: Api, handshake: Handshake, route_key: str, event_type: str, epoch_ms: int
) -> dict:
    request_id = new_id()
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": _request_time(epoch_ms),
        "messageDirection": "IN",
        "stage": api.stage,
        "connectedAt": handshake.connected_at,
        "requestTimeEpoch": epoch_ms,
        "identity": handshake.identity,
        "requestId": request_id,
        "domainName": handshake.domain_name,
        "connectionId": handshake.connection_id,
        "apiId": api.api_id,
    }


#: Hop-by-hop headers of the upgrade request: in the authorizer's event (the developer
#: guide's sample), not in the `$connect` integration's (captured events, e.g.
#: aws/aws-lambda-runtime-interface-emulator issue 25).
_UPGRADE_HEADERS = frozenset({"connection", "upgrade", "content-length"})


def _request_parameters(handshake: Handshake, *, upgrade_headers: bool = True) -> dict:
    headers, multi_headers = _single_and_multi(
        [
            (k, v)
            for k, v in handshake.headers
            if upgrade_headers or k.lower() not in _UPGRADE_HEADERS
        ]
    )
    query, multi_query = _single_and_multi(handshake.query)
    return {
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
    }


def identity_present(handshake: Handshake, sources: tuple[str, ...]) -> bool:
    """Whether every identity source is in the handshake, not null and not empty.

    API Gateway checks this before the authorizer: "Only when this is true does the
    authorizer invoke the authorizer Lambda function. Otherwise, it returns a 401
    Unauthorized response without calling the Lambda function" (API Gateway V2 API
    reference, CreateAuthorizer, IdentitySource). Query parameter names are case
    sensitive, header names are not; a repeated parameter counts by its last value, the
    one `queryStringParameters` carries.
    """
    query = dict(handshake.query)
    for source in sources:
        kind, _, name = source.removeprefix("route.request.").partition(".")
        if kind == "querystring":
            value = query.get(name)
        elif kind == "header":
            value = handshake.header(name)
        else:
            raise ValueError(f"identity source {source!r} is not one the local gateway reads")
        if not value:
            return False
    return True


def authorizer_event(api: Api, handshake: Handshake, epoch_ms: int | None = None) -> dict:
    """The REQUEST authorizer event for a `$connect`."""
    epoch_ms = now_ms() if epoch_ms is None else epoch_ms
    return {
        "type": "REQUEST",
        "methodArn": api.method_arn(CONNECT_ROUTE),
        **_request_parameters(handshake),
        "stageVariables": {},
        "requestContext": _request_context(api, handshake, CONNECT_ROUTE, "CONNECT", epoch_ms),
    }


def _with_authorizer(context: dict, authorizer: dict | None) -> dict:
    if authorizer is not None:
        context["authorizer"] = authorizer
    return context


def connect_event(
    api: Api, handshake: Handshake, authorizer: dict | None, epoch_ms: int | None = None
) -> dict:
    """The `$connect` proxy integration event."""
    epoch_ms = now_ms() if epoch_ms is None else epoch_ms
    parameters = _request_parameters(handshake, upgrade_headers=False)
    event = {"headers": parameters["headers"], "multiValueHeaders": parameters["multiValueHeaders"]}
    if parameters["queryStringParameters"]:
        event["queryStringParameters"] = parameters["queryStringParameters"]
        event["multiValueQueryStringParameters"] = parameters["multiValueQueryStringParameters"]
    context = _request_context(api, handshake, CONNECT_ROUTE, "CONNECT", epoch_ms)
    event["requestContext"] = _with_authorizer(context, authorizer)
    event["isBase64Encoded"] = False
    return event


def message_event(
    api: Api,
    handshake: Handshake,
    authorizer: dict | None,
    route_key: str,
    body: str,
    epoch_ms: int | None = None,
) -> dict:
    """A text message's proxy integration event (a binary frame closes the connection:
    `local.gateway.UNSUPPORTED_DATA`)."""
    epoch_ms = now_ms() if epoch_ms is None else epoch_ms
    context = _request_context(api, handshake, route_key, "MESSAGE", epoch_ms)
    context["messageId"] = new_id()
    return {
        "requestContext": _with_authorizer(context, authorizer),
        "body": body,
        "isBase64Encoded": False,
    }


class MessageEvents:
    """A connection's message events, written as JSON from the parts that never change.

    Every message event of a connection carries the same stage, identity, connection
    and authorizer; only the route key, the ids, the time and the body change. The
    event is encoded once, from `message_event` itself with a mark in each changing
    place, into a format; each message's text is that format filled with its own
    values: the object `message_event` makes (`json.loads` of one equals the other), at
    a fraction of the cost of building and encoding it per message. Should a mark not
    be found exactly once (a header that happens to hold it), every event of the
    connection is made by `message_event` instead.
    """

    #: What changes from one message event of a connection to the next.
    SLOTS = ("routeKey", "extendedRequestId", "requestTime", "requestTimeEpoch")
    SLOTS += ("requestId", "messageId", "body")

    def __init__(self, api: Api, handshake: Handshake, authorizer: dict | None) -> None:
        self._api, self._handshake, self._authorizer = api, handshake, authorizer
        self._format = self._template()
        #: Route keys as JSON strings: a connection's frames go to few routes.
        self._route_keys: dict[str, str] = {}

    def _template(self) -> str | None:
        nonce = base64.b16encode(os.urandom(8)).decode()
        marks = {slot: f"@{slot}-{nonce}@" for slot in self.SLOTS}
        event = message_event(
            self._api, self._handshake, self._authorizer, marks["routeKey"], marks["body"], 0
        )
        context = event["requestContext"]
        for slot in self.SLOTS[1:-1]:
            context[slot] = marks[slot]
        text = json.dumps(event).replace("{", "{{").replace("}", "}}")
        for slot, mark in marks.items():
            if text.count(f'"{mark}"') != 1:
                return None
            text = text.replace(f'"{mark}"', "{" + slot + "}")
        return text

    def encode(self, route_key: str, body: str, epoch_ms: int | None = None) -> tuple[str, str]:
        """A message event's request id and JSON text (`message_event`'s object)."""
        epoch_ms = now_ms() if epoch_ms is None else epoch_ms
        if self._format is None:
            event = message_event(
                self._api, self._handshake, self._authorizer, route_key, body, epoch_ms
            )
            return event["requestContext"]["requestId"], json.dumps(event)
        route = self._route_keys.get(route_key)
        if route is None:
            route = self._route_keys[route_key] = json.dumps(route_key)
        request_id = f'"{new_id()}"'
        # The ids' URL-safe base64, and the time's digits, letters, "/", ":", "+" and
        # space, need no escaping in JSON.
        text = self._format.format(
            routeKey=route,
            extendedRequestId=request_id,
            requestTime=f'"{_request_time(epoch_ms)}"',
            requestTimeEpoch=epoch_ms,
            requestId=request_id,
            messageId=f'"{new_id()}"',
            body=json.dumps(body),
        )
        return request_id[1:-1], text


def disconnect_event(
    api: Api,
    handshake: Handshake,
    authorizer: dict | None,
    status_code: int,
    reason: str,
    epoch_ms: int | None = None,
) -> dict:
    """The `$disconnect` proxy integration event."""
    epoch_ms = now_ms() if epoch_ms is None else epoch_ms
    context = _request_context(api, handshake, DISCONNECT_ROUTE, "DISCONNECT", epoch_ms)
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    host = handshake.header("Host") or handshake.domain_name
    return {
        "headers": {"Host": host},
        "multiValueHeaders": {"Host": [host]},
        "requestContext": _with_authorizer(context, authorizer),
        "isBase64Encoded": False,
    }


def select_route(body: str, routes: Collection[str]) -> str:
    """Route selection by `$request.body.action`: a matching route key, else `$default`.

    "API Gateway calls the $default route if the route selection expression cannot be
    evaluated against the message or if no matching route is found" (developer guide,
    websocket-api-develop-routes): text that is not JSON, or JSON nested deeper than
    the decoder goes (RecursionError), goes to `$default`, whose function answers it.
    """
    if any(not route.startswith("$") for route in routes):
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):
            message = None
        action = message.get("action") if isinstance(message, dict) else None
        if isinstance(action, str) and action in routes and not action.startswith("$"):
            return action
    return DEFAULT_ROUTE


@dataclass(frozen=True)
class Authorization:
    """How API Gateway reads an authorizer's answer: an HTTP status and the context to pass on."""

    status: int
    authorizer: dict | None = None

    @property
    def allowed(self) -> bool:
        return self.status == 200


UNAUTHORIZED = Authorization(401)
FORBIDDEN = Authorization(403)
AUTHORIZER_FAILED = Authorization(500)


def _as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def _context_value_allowed(value: object) -> bool:
    """Whether API Gateway takes `value` in an authorizer's context: not an object or an
    array ("You cannot set a JSON object or array as a valid value of any key in the
    context map", developer guide, api-gateway-lambda-authorizer-output); it answers 500."""
    return not isinstance(value, dict | list)


def _statement_applies(statement: dict, method_arn: str) -> bool:
    actions = _as_list(statement.get("Action", []))
    resources = _as_list(statement.get("Resource", []))
    return any(fnmatch.fnmatchcase("execute-api:Invoke", a) for a in actions) and any(
        isinstance(r, str) and fnmatch.fnmatchcase(method_arn, r) for r in resources
    )


def authorization_from_policy(answer: object, method_arn: str, latency_ms: int) -> Authorization:
    """Read an authorizer's IAM policy: an explicit Deny wins, then an Allow, else 403.

    403, not 401, on the WebSocket handshake too: an Allow whose resource does not match
    `$connect` is refused with 403 (reported in aws-powertools/powertools-lambda-python
    issue 5800); 401 is only an authorizer raising `Unauthorized` or a missing identity.

    The context the integrations see is the authorizer's `context` plus
    `principalId` and `integrationLatency`, as on AWS. A malformed answer is
    API Gateway's 500.
    """
    if not isinstance(answer, dict) or "principalId" not in answer:
        return AUTHORIZER_FAILED
    document = answer.get("policyDocument")
    if not isinstance(document, dict):
        return AUTHORIZER_FAILED
    statements = [s for s in _as_list(document.get("Statement", [])) if isinstance(s, dict)]
    applying = [s for s in statements if _statement_applies(s, method_arn)]
    if any(s.get("Effect") == "Deny" for s in applying):
        return FORBIDDEN
    if not any(s.get("Effect") == "Allow" for s in applying):
        return FORBIDDEN
    context = answer.get("context") or {}
    if not isinstance(context, dict) or not all(map(_context_value_allowed, context.values())):
        return AUTHORIZER_FAILED
    authorizer = {**context, "principalId": answer["principalId"], "integrationLatency": latency_ms}
    return Authorization(200, authorizer)


def authorization_from_error(error_message: str) -> Authorization:
    """An authorizer that raises `Exception("Unauthorized")` means 401; any other error, 500."""
    return UNAUTHORIZED if error_message == "Unauthorized" else AUTHORIZER_FAILED


def handshake_headers(answer: object) -> dict[str, str]:
    """What of a `$connect` answer's `headers` goes into the handshake response: the
    subprotocol it chose, if any. Without it no subprotocol is agreed, whatever the
    client offered, as on AWS."""
    headers = answer.get("headers") if isinstance(answer, dict) else None
    chosen = [str(v) for k, v in (headers or {}).items() if k.lower() == SUBPROTOCOL_HEADER.lower()]
    return {SUBPROTOCOL_HEADER: chosen[-1]} if chosen else {}


def integration_status(answer: object) -> int:
    """The status of a proxy integration's answer; a malformed one is a 502, as on AWS."""
    if isinstance(answer, dict) and isinstance(answer.get("statusCode"), int):
        return answer["statusCode"]
    return 502


def route_response(answer: object) -> str | None:
    """What a two-way route sends back on the socket: the integration's `body`, if any."""
    if isinstance(answer, dict) and answer.get("body") is not None:
        body = answer["body"]
        return body if isinstance(body, str) else json.dumps(body)
    return None


def integration_failure(handshake: Handshake, request_id: str) -> str:
    """The frame API Gateway sends when a route's integration fails."""
    return json.dumps(
        {
            "message": INTERNAL_SERVER_ERROR,
            "connectionId": handshake.connection_id,
            "requestId": request_id,
        }
    )


def _close_code_name(code: int) -> str:
    try:
        return CloseCode(code).name
    except ValueError:
        return "UNKNOWN"


def disconnect_status(
    received: tuple[int, str] | None, sent: tuple[int, str] | None, received_first: bool | None
) -> tuple[int, str]:
    """`disconnectStatusCode` and `disconnectReason` from the close frames exchanged.

    The side that closed first decides, worded as API Gateway words it: the
    client's frame when it closed, the gateway's own (idle timeout, message
    too big, DeleteConnection) otherwise; 1006 when the TCP connection
    dropped without any close frame.
    """
    if received is not None and (received_first or sent is None):
        code, reason = received
        if code == 1005:
            return code, "Client-side close frame status not set"
        name = _close_code_name(code)
        return (
            code,
            f"Client-side close frame status code '{code}' ({name}) - custom reason: {reason}",
        )
    if sent is not None:
        code, reason = sent
        return code, reason or "Connection Closed Normally"
    return 1006, "Connection closed abnormally"
