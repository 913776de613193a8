"""The demo application of PROTOCOL.md section 5: `echo` and `generate_report`.

Used by the local stack, the tests and the benchmarks; also a short example
of the handler API.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from streamer.errors import HandlerFailed, ValidationError
from streamer.handlers import App, Progress, Request

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
