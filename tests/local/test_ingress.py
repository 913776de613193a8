"""The SNS and EventBridge ingress: the events it builds are the documented ones."""

from __future__ import annotations

import json

from local.functions import FunctionSpec, LambdaFunction
from local.ingress import EVENTBRIDGE_PATH, SNS_PATH, Ingress, eventbridge_event, sns_event
from tests.conftest import load_event

SPEC = FunctionSpec("streamer-publish", "tests.local.unused.handler", timeout_s=5)


def keys(value, prefix=""):
    """Every key path of a JSON object (lists by their first element)."""
    if isinstance(value, dict):
        return {p for k, v in value.items() for p in {prefix + k} | keys(v, prefix + k + ".")}
    if isinstance(value, list) and value:
        return keys(value[0], prefix + "[].")
    return set()


def test_the_sns_event_has_the_shape_lambda_gets_from_sns() -> None:
    event = sns_event('{"a": 1}', "us-east-1", "123456789012")
    assert keys(event) == keys(load_event("sns_notification"))
    record = event["Records"][0]
    assert record["EventSource"] == "aws:sns" and record["Sns"]["Message"] == '{"a": 1}'
    assert record["Sns"]["TopicArn"].startswith("arn:aws:sns:us-east-1:123456789012:")


def test_the_eventbridge_event_has_the_shape_lambda_gets_from_a_rule() -> None:
    event = eventbridge_event("src", "Real-time Notification", {"x": 1}, "us-east-1", "1234")
    documented = load_event("eventbridge_notification")
    assert set(event) == set(documented)
    assert (event["detail-type"], event["source"], event["detail"]) == (
        "Real-time Notification",
        "src",
        {"x": 1},
    )


def test_routes_invoke_the_function_and_report_its_outcome() -> None:
    seen = []

    def handler(event, context):
        seen.append(event)
        if "Records" in event:
            raise RuntimeError("rejected: tenant_id is required")
        return {"delivered": 1}

    function = LambdaFunction(SPEC, "us-east-1", "1234", handler=handler)
    ingress = Ingress(function, "us-east-1", "1234")
    try:
        # SNS: the body is the message text; a failing function answers 502 with its error
        failed = ingress.handle("POST", SNS_PATH, b'{"topic": "t"}')
        assert failed.status == 502
        assert json.loads(failed.body)["errorMessage"] == "rejected: tenant_id is required"
        # EventBridge: a PutEvents entry; only the Real-time Notification detail-type matches
        entry = {"Source": "s", "DetailType": "Real-time Notification", "Detail": '{"x": 1}'}
        ok = ingress.handle("POST", EVENTBRIDGE_PATH, json.dumps(entry).encode())
        assert ok.status == 200 and json.loads(ok.body) == {
            "matched": True,
            "result": {"delivered": 1},
        }
        other = ingress.handle(
            "POST", EVENTBRIDGE_PATH, json.dumps(entry | {"DetailType": "X"}).encode()
        )
        assert json.loads(other.body) == {"matched": False}
        assert ingress.handle("POST", EVENTBRIDGE_PATH, b"not json").status == 400
        assert ingress.handle("GET", SNS_PATH, b"").status == 405
        assert ingress.handle("POST", "/other", b"") is None
        assert [e["Records"][0]["Sns"]["Message"] for e in seen if "Records" in e] == [
            '{"topic": "t"}'
        ]
        assert len(seen) == 2
    finally:
        function.close()
