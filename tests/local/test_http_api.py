"""The local HTTP API: routes, the emulated JWT authorizer, and the events it builds."""

from __future__ import annotations

import json

from local.functions import FunctionError
from local.http_api import HttpApi, authorizer_claims, route_of


class RecordingFunction:
    """Stands in for the HTTP function: records events, answers 200 or raises."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[dict] = []
        self.fail = fail

    def invoke(self, event: dict) -> dict:
        self.events.append(event)
        if self.fail:
            raise FunctionError("streamer-http", "RuntimeError", "boom")
        return {"statusCode": 202, "headers": {"Content-Type": "application/json"}, "body": "{}"}


def verify(token: str) -> object:
    if token != VALID:
        raise ValueError("refused")
    return object()


# header {"alg":"ES256"}, claims {"sub":"u1","tenant_id":"t1","permissions":["a","b"],"exp":9}
VALID = (
    "eyJhbGciOiJFUzI1NiJ9."
    "eyJzdWIiOiJ1MSIsInRlbmFudF9pZCI6InQxIiwicGVybWlzc2lvbnMiOlsiYSIsImIiXSwiZXhwIjo5fQ.sig"
)


def api(function: RecordingFunction) -> HttpApi:
    return HttpApi(function, verify, "us-east-1", "123456789012")


def test_only_the_two_routes_match():
    assert route_of("POST", "/requests") == ("POST /requests", {})
    assert route_of("GET", "/requests/r%201") == ("GET /requests/{id}", {"id": "r 1"})
    assert route_of("GET", "/requests") is None
    assert route_of("DELETE", "/requests/r-1") is None
    assert route_of("GET", "/requests/r-1/more") is None
    assert api(RecordingFunction()).handle("GET", "/", {}, b"") is None


def test_claims_are_rendered_as_the_jwt_authorizer_renders_them():
    rendered = authorizer_claims({"sub": "u1", "exp": 9, "permissions": ["a", "b"], "x": True})
    assert rendered == {"sub": "u1", "exp": "9", "permissions": "[a b]", "x": "true"}


def test_post_without_a_valid_token_is_refused_before_the_function():
    function = RecordingFunction()
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        answer = api(function).handle("POST", "/requests", headers, b"{}")
        assert answer.status == 401 and json.loads(answer.body) == {"message": "Unauthorized"}
    assert function.events == []


def test_post_carries_the_claims_in_a_payload_format_2_event():
    function = RecordingFunction()
    answer = api(function).handle(
        "POST", "/requests", {"Authorization": f"Bearer {VALID}", "Host": "h:1"}, b'{"a": 1}'
    )

    assert answer.status == 202
    [event] = function.events
    assert event["version"] == "2.0" and event["routeKey"] == "POST /requests"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["authorizer"]["jwt"]["claims"]["permissions"] == "[a b]"
    assert event["headers"]["authorization"] == f"Bearer {VALID}"
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False


def test_get_has_no_authorizer_and_passes_the_path_and_query():
    function = RecordingFunction()
    api(function).handle("GET", "/requests/r-1?wait=5", {"Authorization": "Bearer w"}, b"")

    [event] = function.events
    assert "authorizer" not in event["requestContext"]
    assert event["pathParameters"] == {"id": "r-1"}
    assert event["queryStringParameters"] == {"wait": "5"}
    assert event["rawQueryString"] == "wait=5"


def test_a_failing_function_is_a_500_as_api_gateway_answers_it():
    answer = api(RecordingFunction(fail=True)).handle("GET", "/requests/r-1", {}, b"")
    assert answer.status == 500
    assert json.loads(answer.body) == {"message": "Internal Server Error"}
