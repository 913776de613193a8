"""SNS- and EventBridge-shaped ingress on the stack's HTTP port, in front of the publish function.

`POST /_ingress/sns` takes what a publisher gives SNS `Publish` as its
`Message` (the body, as text); `POST /_ingress/eventbridge` takes one `PutEvents` entry
(`Source`, `DetailType`, `Detail` as JSON text, as the SDKs send it). Each is
turned into the event Lambda receives from that service (the shapes of the
Lambda developer guide's samples: `Records[].Sns` and the EventBridge event
with `detail-type` and `detail`) and the publish function is invoked with it.

On AWS both services invoke the function asynchronously and the publisher
never sees the outcome. Here the invocation is waited for, off the event
loop (the HTTP server's own thread), and its answer is returned, so a
developer or a test sees at once what was delivered or why it was rejected:
200 with the function's answer, 502 with Lambda's `errorType` and
`errorMessage` when it failed (where AWS would retry, then use the DLQ).
EventBridge's rule matches only the detail-type `Real-time Notification`;
other entries are accepted and go nowhere, as on AWS.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from local.functions import FunctionError, LambdaFunction
from local.management import HttpResponse
from streamer.config import NOTIFICATION_DETAIL_TYPE

SNS_PATH = "/_ingress/sns"
EVENTBRIDGE_PATH = "/_ingress/eventbridge"
#: The topic the local SNS ingress plays.
LOCAL_TOPIC = "streamer-notifications"


def _iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def sns_event(message: str, region: str, account_id: str, subject: str | None = None) -> dict:
    """The event SNS sends a subscribed Lambda function for one published message."""
    topic_arn = f"arn:aws:sns:{region}:{account_id}:{LOCAL_TOPIC}"
    subscription_arn = f"{topic_arn}:{uuid.uuid4()}"
    return {
        "Records": [
            {
                "EventVersion": "1.0",
                "EventSubscriptionArn": subscription_arn,
                "EventSource": "aws:sns",
                "Sns": {
                    "SignatureVersion": "1",
                    "Timestamp": _iso_now(),
                    "Signature": "local",
                    "SigningCertUrl": f"https://sns.{region}.amazonaws.com/local.pem",
                    "MessageId": str(uuid.uuid4()),
                    "Message": message,
                    "MessageAttributes": {},
                    "Type": "Notification",
                    "UnsubscribeUrl": (
                        f"https://sns.{region}.amazonaws.com/?Action=Unsubscribe"
                        f"&SubscriptionArn={subscription_arn}"
                    ),
                    "TopicArn": topic_arn,
                    "Subject": subject,
                },
            }
        ]
    }


def eventbridge_event(
    source: str, detail_type: str, detail: Any, region: str, account_id: str
) -> dict:
    """The event an EventBridge rule sends its Lambda target for one `PutEvents` entry."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account_id,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [],
        "detail": detail,
    }


def _json(status: int, body: Any) -> HttpResponse:
    return HttpResponse(status, json.dumps(body).encode(), {"Content-Type": "application/json"})


class Ingress:
    """Answers the two ingress routes; None for every other request."""

    def __init__(self, function: LambdaFunction, region: str, account_id: str) -> None:
        self._function = function
        self._region = region
        self._account_id = account_id

    def handle(self, method: str, path: str, body: bytes) -> HttpResponse | None:
        path = path.split("?", 1)[0]
        if path not in (SNS_PATH, EVENTBRIDGE_PATH):
            return None
        if method != "POST":
            return _json(405, {"message": "Method Not Allowed"})
        try:
            text = body.decode("utf-8")
            if path == SNS_PATH:
                event = sns_event(text, self._region, self._account_id)
            else:
                event = self._eventbridge(text)
        except (UnicodeDecodeError, ValueError) as error:
            return _json(400, {"message": str(error)})
        if event is None:
            return _json(200, {"matched": False})
        try:
            answer = self._function.invoke(event)
        except FunctionError as error:
            return _json(502, {"errorType": error.error_type, "errorMessage": error.error_message})
        return _json(200, {"matched": True, "result": answer})

    def _eventbridge(self, text: str) -> dict | None:
        entry = json.loads(text)
        if not isinstance(entry, dict) or not isinstance(entry.get("Detail"), str):
            raise ValueError("expected a PutEvents entry: Source, DetailType, Detail (JSON text)")
        detail = json.loads(entry["Detail"])
        if entry.get("DetailType") != NOTIFICATION_DETAIL_TYPE:
            return None
        return eventbridge_event(
            str(entry.get("Source") or "local"),
            NOTIFICATION_DETAIL_TYPE,
            detail,
            self._region,
            self._account_id,
        )


DEFAULT_HTTP_URL = "http://127.0.0.1:8081/"


def publish_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local publish",
        description="Publish a notification through the local stack's SNS or EventBridge "
        "ingress, as an external system would on AWS.",
    )
    parser.add_argument("--tenant", required=True, help="tenant of the topic or user")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--topic", help="deliver to this topic's subscribers")
    target.add_argument("--user", help="deliver to every connection of this user")
    parser.add_argument("--event", required=True, help="event name, e.g. processing.complete")
    parser.add_argument("--data", default="null", help="JSON data (default: null)")
    parser.add_argument("--via", choices=("sns", "eventbridge"), default="sns")
    parser.add_argument("--source", default="local.cli", help="EventBridge source")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help=f"the stack's HTTP URL (default: {DEFAULT_HTTP_URL})")
    where.add_argument("--ready-file", type=Path, help="read http_url from this ready file")
    return parser


def notification_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"tenant_id": args.tenant, "event": args.event}
    if args.topic is not None:
        body["topic"] = args.topic
    else:
        body["user_id"] = args.user
    body["data"] = json.loads(args.data)
    return body


def publish_request(http_url: str, via: str, body: dict, source: str) -> tuple[str, bytes]:
    """The ingress URL and the request body a publisher sends through `via`."""
    base = http_url.rstrip("/")
    if via == "sns":
        return base + SNS_PATH, json.dumps(body).encode()
    entry = {"Source": source, "DetailType": NOTIFICATION_DETAIL_TYPE, "Detail": json.dumps(body)}
    return base + EVENTBRIDGE_PATH, json.dumps(entry).encode()


def publish_main(argv: list[str]) -> int:
    """`python -m local publish`: print the publish function's answer; 1 if it failed."""
    args = publish_parser().parse_args(argv)
    try:
        body = notification_body(args)
    except ValueError as error:
        print(f"python -m local publish: --data is not JSON: {error}", file=sys.stderr)
        return 2
    http_url = args.url
    if http_url is None and args.ready_file is not None:
        http_url = json.loads(args.ready_file.read_text())["http_url"]
    url, data = publish_request(http_url or DEFAULT_HTTP_URL, args.via, body, args.source)
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            print(answer.read().decode())
            return 0
    except urllib.error.HTTPError as error:
        print(error.read().decode(), file=sys.stderr)
        return 1
    except urllib.error.URLError as error:
        print(f"python -m local publish: cannot reach {url}: {error.reason}", file=sys.stderr)
        return 1
