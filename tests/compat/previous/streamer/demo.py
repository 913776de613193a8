"""The demo application of docs/protocol.md section 5: `echo` and `generate_report`.

Used by the local stack, the tests and the benchmarks; also a short example
of the handler API.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from streamer.errors import HandlerFailed, RetryableError, ValidationError
from streamer.handlers import App, Handler, Progress, Request, Waiting

app = App()


@app.action("echo", estimated_duration=0.01)
def echo(request: Request, progress: Progress) -> dict[str, Any]:
    return {"echo": request.payload}


def _integer(
    payload: dict[str, Any], name: str, low: int, high: int, errors: dict[str, str]
) -> int | None:
    value = payload.get(name)
    # bool is an int in Python, never in the protocol.
    if not isinstance(value, int) or isinstance(value, bool):
        errors[name] = f"must be an integer from {low} to {high}"
        return None
    if not low <= value <= high:
        errors[name] = f"must be from {low} to {high}"
        return None
    return value


def validate_report(payload: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    if "pages" not in payload:
        errors["pages"] = "is required"
        pages = None
    else:
        pages = _integer(payload, "pages", 1, 1000, errors)
    page_ms = _integer(payload, "page_ms", 0, 10000, errors) if "page_ms" in payload else 100
    fail_at_page = None
    if payload.get("fail_at_page") is not None:
        fail_at_page = _integer(payload, "fail_at_page", 1, 1000, errors)
    if errors:
        raise ValidationError(errors)
    return {"pages": pages, "page_ms": page_ms, "fail_at_page": fail_at_page}


@app.action("generate_report", estimated_duration=30, validate=validate_report)
def generate_report(request: Request, progress: Progress) -> dict[str, Any]:
    pages: int = request.payload["pages"]
    page_ms: int = request.payload["page_ms"]
    fail_at_page: int | None = request.payload.get("fail_at_page")
    # A re-driven attempt resumes after the last page it saved.
    state = request.checkpoint if isinstance(request.checkpoint, dict) else {}
    first_page = int(state.get("pages_done", 0)) + 1
    for page in range(first_page, pages + 1):
        time.sleep(page_ms / 1000)
        if page == fail_at_page:
            raise HandlerFailed(f"page {page} could not be rendered", details={"page": page})
        progress.report(100 * page / pages, f"page {page} of {pages}")
        progress.checkpoint({"pages_done": page})
    # Derived from the request, so a re-run names the same report.
    name = f"{request.tenant_id}/{request.user_id}/{request.request_id}"
    return {"pages": pages, "report_id": f"rpt-{uuid.uuid5(uuid.NAMESPACE_URL, name)}"}


#: Where the demo's external batch API is (the local stack's `local/batch_provider.py`).
BATCH_PROVIDER_URL = "STREAMER_BATCH_PROVIDER_URL"


class BatchClassify(Handler):
    """Hands items to an external batch API and reports its aggregates until it is done.

    Payload: `items` (a list) or `count` (that many generated items). The
    provider's outage (503, or no answer) is a `RetryableError`: polled again
    later, the job is not lost.
    """

    action = "batch_classify"
    estimated_duration = 300

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        items = payload.get("items")
        if items is None:
            errors: dict[str, str] = {}
            count = _integer(payload, "count", 1, 10_000, errors)
            if count is None:
                raise ValidationError(errors)
            items = [f"item-{i}" for i in range(count)]
        if not isinstance(items, list) or not items:
            raise ValidationError({"items": "must be a non-empty list"})
        return {"items": items}

    def process(self, request: Request, progress: Progress) -> Waiting:
        answer = _call_provider("POST", "/jobs", {"items": request.payload["items"]})
        return Waiting(poll_after_s=1, state={"job_id": answer["job_id"]}, deadline_s=3600)

    def poll(self, request: Request, state: dict[str, Any], progress: Progress) -> Any:
        job = _call_provider("GET", f"/jobs/{state['job_id']}")
        aggregates = {k: job[k] for k in ("processed", "succeeded", "failed")}
        progress.report(100 * job["processed"] / job["total"], "classifying", aggregates)
        if not job["done"]:
            return Waiting(poll_after_s=1, state=state)
        return aggregates


def _call_provider(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    url = os.environ.get(BATCH_PROVIDER_URL)
    if not url:
        raise HandlerFailed(f"{BATCH_PROVIDER_URL} is not set")
    data = None if body is None else json.dumps(body).encode()
    call = urllib.request.Request(
        url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(call, timeout=5) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:
        if error.code >= 500:
            raise RetryableError(f"the batch provider answered {error.code}") from error
        raise HandlerFailed(f"the batch provider answered {error.code}") from error
    except OSError as error:
        raise RetryableError("the batch provider did not answer") from error


app.register(BatchClassify())
