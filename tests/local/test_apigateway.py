"""Events built as API Gateway sends them; answers read as API Gateway reads them."""

from __future__ import annotations

import json

import pytest

from local import apigateway
from local.apigateway import Api, Handshake
from tests.conftest import load_event

API = Api(region="eu-west-1", account_id="111122223333", api_id="abcdef1234", stage="prod")
HANDSHAKE = Handshake(
    connection_id="FDmBIeapIAMCIQg=",
    path="/?token=abc&tag=1&tag=2",
    headers=(
        ("Host", "127.0.0.1:8080"),
        ("Upgrade", "websocket"),
        ("User-Agent", "e2e/1.0"),
        ("X-Dup", "first"),
        ("X-Dup", "second"),
    ),
    source_ip="127.0.0.1",
    domain_name="127.0.0.1:8080",
    connected_at=1737995987617,
)
AUTHORIZER = {"user_id": "user-a", "tenant_id": "tenant-1", "permissions": "", "principalId": "a"}


def test_authorizer_event_has_the_documented_shape() -> None:
    # GIVEN the REQUEST authorizer event AWS documents
    documented = load_event("authorizer_connect")
    # WHEN the gateway builds one for a handshake
    event = apigateway.authorizer_event(API, HANDSHAKE, epoch_ms=1737995987700)
    # THEN it has the same fields, and the request's own values
    assert set(event) == set(documented)
    assert set(event["requestContext"]) == set(documented["requestContext"])
    assert (
        event["methodArn"] == "arn:aws:execute-api:eu-west-1:111122223333:abcdef1234/prod/$connect"
    )
    assert event["queryStringParameters"] == {"token": "abc", "tag": "2"}
    assert event["multiValueQueryStringParameters"] == {"token": ["abc"], "tag": ["1", "2"]}
    assert event["headers"]["X-Dup"] == "second"
    assert event["multiValueHeaders"]["X-Dup"] == ["first", "second"]
    context = event["requestContext"]
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert context["connectionId"] == HANDSHAKE.connection_id
    assert context["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "e2e/1.0"}
    assert context["requestTimeEpoch"] == 1737995987700
    assert context["requestTime"] == "27/Jan/2025:16:39:47 +0000"


def test_connect_event_has_the_documented_shape_and_the_authorizer_context() -> None:
    documented = load_event("connect")
    event = apigateway.connect_event(API, HANDSHAKE, AUTHORIZER)
    assert set(event) == set(documented)
    assert set(event["requestContext"]) == set(documented["requestContext"])
    assert event["requestContext"]["authorizer"] == AUTHORIZER
    assert event["isBase64Encoded"] is False


def test_connect_event_without_query_string_has_no_query_fields() -> None:
    bare = Handshake("c1", "/", (("Host", "h"),), "10.0.0.1", "h")
    event = apigateway.connect_event(API, bare, AUTHORIZER)
    assert "queryStringParameters" not in event
    assert "multiValueQueryStringParameters" not in event


def test_message_event_has_the_documented_shape() -> None:
    documented = load_event("message")
    body = json.dumps({"action": "echo"})
    event = apigateway.message_event(API, HANDSHAKE, AUTHORIZER, "$default", body)
    assert set(event) == set(documented)
    assert set(event["requestContext"]) == set(documented["requestContext"])
    assert event["body"] == body
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["messageId"] != event["requestContext"]["requestId"]


def _as_message_event_with(event: dict, handshake: Handshake, authorizer: dict | None) -> dict:
    """`message_event`'s object for the same route, body, time and ids as `event`."""
    context = event["requestContext"]
    expected = apigateway.message_event(
        API, handshake, authorizer, context["routeKey"], event["body"], context["requestTimeEpoch"]
    )
    for name in ("requestId", "extendedRequestId", "messageId"):
        expected["requestContext"][name] = context[name]
    return expected


@pytest.mark.parametrize("authorizer", [AUTHORIZER, None], ids=["authorized", "no-authorizer"])
@pytest.mark.parametrize(
    "body",
    ['{"action": "echo"}', 'not json {"quote": "\\"}\n\u00e9\u2028', ""],
    ids=["json", "escapes", "empty"],
)
def test_a_connections_encoded_message_event_is_the_message_event(
    authorizer: dict | None, body: str
) -> None:
    # GIVEN a connection's message events, its handshake with JSON's special characters
    handshake = Handshake(
        "FDmBIeapIAMCIQg=",
        "/?token=abc",
        (("Host", "h"), ("User-Agent", 'ua {"x": "}\\"} \u00e9')),
        "10.0.0.1",
        "h",
        connected_at=1737995987617,
    )
    events = apigateway.MessageEvents(API, handshake, authorizer)

    # WHEN one is written for a frame
    request_id, text = events.encode("sendmessage", body, epoch_ms=1737995987700)

    # THEN it is the object message_event makes, with new ids, and its request id
    event = json.loads(text)
    assert event == _as_message_event_with(event, handshake, authorizer)
    context = event["requestContext"]
    assert context["requestId"] == context["extendedRequestId"] == request_id
    assert context["messageId"] != request_id
    assert context["requestTime"] == "27/Jan/2025:16:39:47 +0000"
    assert context["routeKey"] == "sendmessage"
    assert event["body"] == body
    _, again = events.encode("$default", body)
    assert json.loads(again)["requestContext"]["requestId"] != request_id


def test_a_handshake_holding_a_mark_gets_its_message_events_made_whole(monkeypatch) -> None:
    # GIVEN a header that holds the very mark the events' format would be cut at
    monkeypatch.setattr(apigateway.os, "urandom", lambda n: bytes(n))
    mark = f"@requestId-{'00' * 8}@"
    handshake = Handshake("c1", "/", (("Host", "h"), ("User-Agent", mark)), "10.0.0.1", "h")
    events = apigateway.MessageEvents(API, handshake, AUTHORIZER)

    # WHEN an event is written
    request_id, text = events.encode("$default", "{}", epoch_ms=1737995987700)

    # THEN it is still message_event's object, the header untouched
    event = json.loads(text)
    assert event == _as_message_event_with(event, handshake, AUTHORIZER)
    assert event["requestContext"]["identity"]["userAgent"] == mark
    assert event["requestContext"]["requestId"] == request_id


def test_disconnect_event_has_the_documented_shape() -> None:
    documented = load_event("disconnect")
    event = apigateway.disconnect_event(API, HANDSHAKE, AUTHORIZER, 1001, "Going away")
    assert set(event) == set(documented)
    assert set(event["requestContext"]) == set(documented["requestContext"])
    assert event["requestContext"]["disconnectStatusCode"] == 1001
    assert event["requestContext"]["disconnectReason"] == "Going away"


def test_ids_look_like_api_gateway_ids_and_are_path_safe() -> None:
    ids = {apigateway.new_id() for _ in range(200)}
    assert len(ids) == 200
    for value in ids:
        assert len(value) == 16 and value.endswith("=")
        assert "/" not in value and "+" not in value


def _policy(effect: str, resource: str, context: dict | None = None) -> dict:
    return {
        "principalId": "user-a",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": context or {"user_id": "user-a"},
    }


METHOD_ARN = API.method_arn("$connect")


def test_allow_policy_passes_context_principal_and_latency_on() -> None:
    authorization = apigateway.authorization_from_policy(
        _policy("Allow", METHOD_ARN), METHOD_ARN, 12
    )
    assert authorization.allowed
    assert authorization.authorizer == {
        "user_id": "user-a",
        "principalId": "user-a",
        "integrationLatency": 12,
    }


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (_policy("Deny", METHOD_ARN), 403),
        (_policy("Allow", "arn:aws:execute-api:eu-west-1:111122223333:other/prod/$connect"), 403),
        (_policy("Allow", "arn:aws:execute-api:eu-west-1:111122223333:abcdef1234/*"), 200),
        (
            {
                **_policy("Allow", "*"),
                "policyDocument": {
                    "Statement": [
                        {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"},
                        {"Action": "execute-api:*", "Effect": "Deny", "Resource": [METHOD_ARN]},
                    ]
                },
            },
            403,
        ),
        ({"policyDocument": {}}, 500),
        ({"principalId": "x"}, 500),
        (None, 500),
        (_policy("Allow", METHOD_ARN, {"user": {"id": "a"}}), 500),
        (_policy("Allow", METHOD_ARN, {"roles": ["a", "b"]}), 500),
        (_policy("Allow", METHOD_ARN, {"n": 1, "ok": True, "s": "x", "none": None}), 200),
    ],
    ids=[
        *["deny", "other-api", "wildcard", "deny-wins", "no-principal", "no-policy", "none"],
        *["context-object", "context-array", "context-scalars"],
    ],
)
def test_policy_decides_the_handshake_status(answer: object, status: int) -> None:
    assert apigateway.authorization_from_policy(answer, METHOD_ARN, 0).status == status


def test_unauthorized_error_is_401_and_any_other_error_is_500() -> None:
    assert apigateway.authorization_from_error("Unauthorized").status == 401
    assert apigateway.authorization_from_error("KeyError: 'token'").status == 500


@pytest.mark.parametrize(
    ("body", "route"),
    [
        ('{"action": "echo"}', "echo"),
        ('{"action": "other"}', "$default"),
        ('{"action": "$connect"}', "$default"),
        ("not json", "$default"),
        ("[1]", "$default"),
        # Deeper than Python's JSON decoder can go: it cannot be evaluated, so `$default`.
        ('{"action": "echo", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "$default"),
    ],
    ids=["action", "other", "reserved", "not-json", "array", "deep"],
)
def test_route_selection_by_body_action(body: str, route: str) -> None:
    assert apigateway.select_route(body, {"echo", "$default"}) == route


def test_route_response_is_the_integration_body() -> None:
    assert apigateway.route_response({"statusCode": 200, "body": '{"a":1}'}) == '{"a":1}'
    assert apigateway.route_response({"statusCode": 200}) is None
    assert apigateway.route_response(None) is None
    assert apigateway.integration_status({"statusCode": 401}) == 401
    assert apigateway.integration_status({"body": "x"}) == 502


@pytest.mark.parametrize(
    ("received", "sent", "received_first", "expected"),
    [
        (
            (1000, ""),
            (1000, ""),
            True,
            (1000, "Client-side close frame status code '1000' (NORMAL_CLOSURE) - custom reason: "),
        ),
        ((1005, ""), (1005, ""), True, (1005, "Client-side close frame status not set")),
        ((1001, ""), (1001, "Going away"), False, (1001, "Going away")),
        ((1000, ""), (1000, ""), False, (1000, "Connection Closed Normally")),
        (None, (1009, "message too big"), None, (1009, "message too big")),
        (None, None, None, (1006, "Connection closed abnormally")),
    ],
    ids=["client-1000", "client-no-status", "idle", "delete", "too-big", "dropped"],
)
def test_disconnect_status_names_who_closed_and_why(
    received: tuple | None, sent: tuple | None, received_first: bool | None, expected: tuple
) -> None:
    assert apigateway.disconnect_status(received, sent, received_first) == expected


@pytest.mark.parametrize(
    ("path", "headers", "present"),
    [
        ("/?token=abc", (), True),
        ("/?tag=1&token=abc", (("Authorization", "Bearer abc"),), True),
        ("/", (("Authorization", "Bearer abc"),), False),
        ("/?token=", (), False),
        ("/?token", (), False),
        ("/?Token=abc", (), False),
        ("/?other=1", (("token", "abc"),), False),
    ],
    ids=["query", "query-and-header", "header-only", "empty", "bare", "other-case", "as-header"],
)
def test_identity_sources_must_be_present_and_non_empty(
    path: str, headers: tuple, present: bool
) -> None:
    # GIVEN the identity sources the Pulumi component gives the $connect authorizer
    handshake = Handshake("c1", path, (("Host", "h"), *headers), "10.0.0.1", "h")
    # WHEN a handshake is checked against them  THEN only a non-empty `token` query parameter counts
    assert apigateway.identity_present(handshake, API.identity_sources) is present


def test_identity_sources_of_headers_are_matched_case_insensitively() -> None:
    handshake = Handshake("c1", "/", (("x-api-key", "k"),), "10.0.0.1", "h")
    assert apigateway.identity_present(handshake, ("route.request.header.X-Api-Key",))
    assert not apigateway.identity_present(handshake, ("route.request.header.X-Other",))


def test_handshake_headers_pass_on_only_the_subprotocol_connect_chose() -> None:
    answer = {"statusCode": 200, "headers": {"sec-websocket-protocol": "chat", "X-Other": "1"}}
    assert apigateway.handshake_headers(answer) == {"Sec-WebSocket-Protocol": "chat"}
    assert apigateway.handshake_headers({"statusCode": 200}) == {}
    assert apigateway.handshake_headers({"statusCode": 200, "headers": None}) == {}


def test_query_parameters_are_url_decoded_with_plus_as_space() -> None:
    # API Gateway hands handlers decoded values, `+` as a space (reported in aws/aws-cdk
    # issue 19827: `?sort=-+createdAt` arrives as "- createdAt").
    handshake = Handshake("c1", "/?token=a%2Bb&sort=-+createdAt", (), "10.0.0.1", "h")
    event = apigateway.authorizer_event(API, handshake)
    assert event["queryStringParameters"] == {"token": "a+b", "sort": "- createdAt"}


def test_connect_event_leaves_out_the_upgrade_headers_the_authorizer_sees() -> None:
    # GIVEN a handshake's upgrade request
    handshake = Handshake(
        "c1",
        "/?token=abc",
        (("Host", "h"), ("Connection", "Upgrade"), ("Upgrade", "websocket"), ("X-A", "1")),
        "10.0.0.1",
        "h",
    )
    # WHEN the authorizer's and $connect's events are built
    authorizer = apigateway.authorizer_event(API, handshake)
    connect = apigateway.connect_event(API, handshake, AUTHORIZER)
    # THEN the authorizer sees Connection and Upgrade (the developer guide's sample), the
    # $connect integration does not (captured $connect events, e.g. in
    # aws/aws-lambda-runtime-interface-emulator issue 25), in both header views
    assert {"Connection", "Upgrade"} <= set(authorizer["headers"])
    assert set(connect["headers"]) == set(connect["multiValueHeaders"]) == {"Host", "X-A"}
