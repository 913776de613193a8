"""The demo page on the stack's HTTP port: `local/static/` at `/`, `client/js/` at `/client/`.

Plain files, no build step. `/` is `local/static/index.html` with the
WebSocket URL filled in; `/dev-token` answers the dev token as JSON, and only
when the stack made its own dev key (never with `--jwt-public-key` or
`--jwks-url`). Only files of known types directly in one of the two folders
are served: no subfolders, no dotfiles, no `..`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from urllib.parse import unquote, urlsplit

from local.management import HttpResponse

ROOT = Path(__file__).resolve().parent.parent
STATIC_DIR = ROOT / "local" / "static"
CLIENT_DIR = ROOT / "client" / "js"
WEBSOCKET_URL_MARK = "%%WEBSOCKET_URL%%"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".ts": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def serve(method: str, target: str, ready: dict) -> HttpResponse | None:
    """The answer to a GET or HEAD of the page, its files or `/dev-token`; None for other paths."""
    if method not in ("GET", "HEAD"):
        return None
    path = urlsplit(target).path
    if path in ("/", "/index.html"):
        page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        page = page.replace(WEBSOCKET_URL_MARK, html.escape(ready.get("websocket_url", "")))
        return _ok(page.encode(), CONTENT_TYPES[".html"])
    if path == "/dev-token":
        token = ready.get("dev_token")
        if not token:
            return None
        body = {"token": token, "websocket_url": ready.get("websocket_url")}
        return HttpResponse(
            200,
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "Cache-Control": "no-store"},
        )
    if path.startswith("/client/"):
        return _file(CLIENT_DIR, path.removeprefix("/client/"))
    return _file(STATIC_DIR, path.removeprefix("/"))


def _file(directory: Path, name: str) -> HttpResponse | None:
    name = unquote(name)
    if not name or name.startswith(".") or any(c in name for c in "/\\\0:"):
        return None
    content_type = CONTENT_TYPES.get(Path(name).suffix)
    candidate = directory / name
    if content_type is None or candidate.resolve().parent != directory.resolve():
        return None
    if not candidate.is_file():
        return None
    return _ok(candidate.read_bytes(), content_type)


def _ok(body: bytes, content_type: str) -> HttpResponse:
    return HttpResponse(200, body, {"Content-Type": content_type, **_HEADERS})
