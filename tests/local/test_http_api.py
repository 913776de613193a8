"""The local HTTP API: routes, the Lambda authorizer before them, CORS, the events it builds."""

from __future__ import annotations

import json

import pytest

from local.functions import FunctionError
from local.http_api import HttpApi, authorization, authorizer_event, route_of
from streamer.cors import CorsRules, InvalidCorsRules

VALID = "valid-token"
CONTEXT = {"user_id": "u1", "tenant_id": "t1", "permissions": "a,b"}
ORIGIN = "https://app.example.test"


class RecordingFunction:
    """Stands in for a function: records events, answers `answer` or raises."""

    def __init__(self, answer: object = None, fail: bool = False) -> None:
        self.events: list[dict] = []
        self.answer = answer
        self.fail = fail

    def invoke(self, event: dict) -> object:
        self.events.append(event)
        if self.fail:
            raise FunctionError("streamer-x", "RuntimeError", "boom")
        return self.answer


class Authorizer(RecordingFunction):
    """A simple-response authorizer that allows exactly `VALID`."""

    def invoke(self, event: dict) -> object:
        super().invoke(event)
        allowed = event["identitySource"] == [f"Bearer {VALID}"]
        return {"isAuthorized": allowed, "context": CONTEXT if allowed else {}}


def http_function() -> RecordingFunction:
    return RecordingFunction(
        {
            "statusCode": 202,
            "headers": {"Content-Type": "application/json", "Access-Control-Allow-Origin": "*"},
            "body": "{}",
        }
    )


def api(
    function: RecordingFunction, authorizer: RecordingFunction | None = None, **cors
) -> HttpApi:
    rules = CorsRules(**cors) if cors else None
    return HttpApi(function, authorizer or Authorizer(), "us-east-1", "123456789012", rules)


def test_only_the_two_routes_match():
    assert route_of("POST", "/requests") == ("POST /requests", {})
    assert route_of("GET", "/requests/r%201") == ("GET /requests/{id}", {"id": "r 1"})
    assert route_of("GET", "/requests") is None
    assert route_of("DELETE", "/requests/r-1") is None
    assert route_of("GET", "/requests/r-1/more") is None
    assert api(http_function()).handle("GET", "/", {}, b"") is None


def test_without_an_authorization_header_it_is_401_and_the_authorizer_is_not_invoked():
    function, authorizer = http_function(), Authorizer()
    for method, path in (("POST", "/requests"), ("GET", "/requests/r-1")):
        answer = api(function, authorizer).handle(method, path, {}, b"{}")
        assert answer.status == 401 and json.loads(answer.body) == {"message": "Unauthorized"}
    assert authorizer.events == [] and function.events == []


def test_a_refused_token_is_403_and_the_function_is_not_invoked():
    function = http_function()
    for header in ("Bearer nope", "Basic x"):
        answer = api(function).handle("POST", "/requests", {"Authorization": header}, b"{}")
        assert answer.status == 403 and json.loads(answer.body) == {"message": "Forbidden"}
    assert function.events == []


def test_the_authorizer_gets_the_v2_event_of_the_request():
    authorizer = Authorizer()
    headers = {"Authorization": f"Bearer {VALID}", "Host": "h:1"}
    api(http_function(), authorizer).handle("GET", "/requests/r-1?wait=5", headers, b"")

    [event] = authorizer.events
    assert event["version"] == "2.0" and event["type"] == "REQUEST"
    assert event["routeArn"] == (
        "arn:aws:execute-api:us-east-1:123456789012:local/$default/GET/requests/r-1"
    )
    assert event["identitySource"] == [f"Bearer {VALID}"]
    assert event["routeKey"] == "GET /requests/{id}"
    assert event["headers"]["authorization"] == f"Bearer {VALID}"
    assert event["queryStringParameters"] == {"wait": "5"}
    assert event["pathParameters"] == {"id": "r-1"}
    assert event["requestContext"]["http"]["method"] == "GET"


def test_the_function_gets_the_authorizer_context_as_authorizer_lambda():
    function = http_function()
    headers = {"Authorization": f"Bearer {VALID}", "Host": "h:1"}
    answer = api(function).handle("POST", "/requests", headers, b'{"a": 1}')

    assert answer.status == 202
    [event] = function.events
    assert event["version"] == "2.0" and event["routeKey"] == "POST /requests"
    assert event["requestContext"]["authorizer"] == {"lambda": CONTEXT}
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False


def test_an_authorizer_that_fails_or_answers_another_shape_is_a_500():
    for authorizer in (
        RecordingFunction(fail=True),
        RecordingFunction({"principalId": "u1"}),
        RecordingFunction({"isAuthorized": "yes"}),
    ):
        function = http_function()
        headers = {"Authorization": f"Bearer {VALID}"}
        answer = api(function, authorizer).handle("POST", "/requests", headers, b"")
        assert answer.status == 500 and function.events == []
    assert authorization({"isAuthorized": True}) == {}


def test_a_failing_function_is_a_500_as_api_gateway_answers_it():
    headers = {"Authorization": f"Bearer {VALID}"}
    answer = api(RecordingFunction(fail=True)).handle("GET", "/requests/r-1", headers, b"")
    assert answer.status == 500
    assert json.loads(answer.body) == {"message": "Internal Server Error"}


def test_an_event_without_the_identity_header_has_no_authorizer_event():
    event = {"headers": {}, "requestContext": {"http": {"method": "GET", "path": "/"}}}
    assert authorizer_event(event, region="us-east-1", account_id="1") is None


# --- CORS -----------------------------------------------------------------------------------


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    }


def test_a_preflight_from_an_allowed_origin_is_answered_without_authorizer_or_function():
    function, authorizer = http_function(), Authorizer()
    answer = api(function, authorizer, allow_origins=(ORIGIN,)).handle(
        "OPTIONS", "/requests", preflight(ORIGIN), b""
    )

    assert answer.status == 204
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert answer.headers["access-control-allow-methods"] == "GET,POST,OPTIONS"
    assert answer.headers["access-control-allow-headers"] == "authorization,content-type"
    assert answer.headers["access-control-max-age"] == "300"
    assert function.events == [] and authorizer.events == []


def test_a_preflight_from_another_origin_gets_no_cors_headers():
    answer = api(http_function(), allow_origins=(ORIGIN,)).handle(
        "OPTIONS", "/requests", preflight("https://evil.example.test"), b""
    )
    assert answer.status == 204
    assert not any(name.startswith("access-control-") for name in answer.headers)


def test_answers_carry_the_configured_origin_only_and_never_the_functions_cors_headers():
    headers = {"Authorization": f"Bearer {VALID}", "Origin": ORIGIN}
    allowed = api(http_function(), allow_origins=(ORIGIN,)).handle(
        "POST", "/requests", headers, b""
    )
    other = api(http_function(), allow_origins=(ORIGIN,)).handle(
        "POST", "/requests", {**headers, "Origin": "https://evil.example.test"}, b""
    )

    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert allowed.headers["vary"] == "Origin"
    assert not any(name.lower().startswith("access-control-") for name in other.headers)


def test_without_cors_rules_a_preflight_is_not_the_apis():
    assert api(http_function()).handle("OPTIONS", "/requests", preflight(ORIGIN), b"") is None


def test_the_cors_setting_is_read_from_the_same_json_object_as_the_stack_config():
    rules = CorsRules.from_env({"STREAMER_CORS": json.dumps({"allowOrigins": [ORIGIN]})})
    assert rules == CorsRules(allow_origins=(ORIGIN,))
    assert CorsRules.from_env({}) == CorsRules() and not CorsRules().enabled


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        '["https://app.example.test"]',
        '{"allowOrigins": ["https://app.example.test/"]}',
        '{"allowOrigins": ["app.example.test"]}',
        '{"allowMethods": ["FETCH"]}',
        '{"maxAgeS": 100000}',
        '{"origins": ["https://app.example.test"]}',
    ],
)
def test_a_malformed_cors_setting_is_refused(raw):
    with pytest.raises(InvalidCorsRules):
        CorsRules.from_env({"STREAMER_CORS": raw})
