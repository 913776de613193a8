"""A fake external batch API (seed 004's provider): submit items, poll their status.

`POST /jobs` with `{"items": [...]}` answers `{"job_id"}`; each
`GET /jobs/{id}` classifies up to `items_per_poll` more items (every tenth
fails) and answers `{"total", "processed", "succeeded", "failed", "done"}`.
`POST /_outage` with `{"on": true}` makes status calls answer 503 until
turned off, to show that an outage delays jobs and loses none.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class BatchProvider:
    """The provider's jobs, served over HTTP on a free port of `host`."""

    def __init__(self, host: str = "127.0.0.1", items_per_poll: int = 10) -> None:
        self.items_per_poll = items_per_poll
        self.outage = False
        self._jobs: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, name="batch-provider")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def submit(self, items: list[Any]) -> str:
        job_id = uuid.uuid4().hex
        with self._lock:
            self._jobs[job_id] = {"total": len(items), "processed": 0}
        return job_id

    def status(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            job["processed"] = min(job["total"], job["processed"] + self.items_per_poll)
            processed, total = job["processed"], job["total"]
        failed = processed // 10
        return {
            "total": total,
            "processed": processed,
            "succeeded": processed - failed,
            "failed": failed,
            "done": processed == total,
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def do_POST(self) -> None:
                if self.path == "/jobs":
                    self._answer(200, {"job_id": provider.submit(list(self._body()["items"]))})
                elif self.path == "/_outage":
                    provider.outage = bool(self._body().get("on"))
                    self._answer(200, {"outage": provider.outage})
                else:
                    self._answer(404, {"error": "not found"})

            def do_GET(self) -> None:
                if not self.path.startswith("/jobs/"):
                    self._answer(404, {"error": "not found"})
                elif provider.outage:
                    self._answer(503, {"error": "unavailable"})
                else:
                    status = provider.status(self.path[len("/jobs/") :])
                    self._answer(200 if status else 404, status or {"error": "no such job"})

        return Handler
