"""Which browser origins may call the HTTP API, and the CORS headers that follow from it.

One definition for both sides: the Pulumi program turns `CorsRules` into the HTTP API's
`corsConfiguration` (stack config `streamer:cors`), and the local stack answers with
`preflight_headers` / `response_headers` from the same rules (`STREAMER_CORS`, the same
JSON object). What API Gateway does with a CORS configuration
(docs.aws.amazon.com/apigateway/latest/developerguide/http-api-cors.html):

- it answers preflight `OPTIONS` requests itself, even without an OPTIONS route, so no
  authorizer or function runs for them;
- it adds the configured headers to the integration's answer and ignores CORS headers
  the integration returns;
- it returns CORS headers only to a request with an `Origin` header (and, for OPTIONS,
  `Access-Control-Request-Method`); an origin that is not allowed gets none, and the
  browser then refuses the answer to the page.

The default allows no origin: a browser page on another origin is refused until the
stack names it. `*` is accepted only when configured explicitly.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The local stack reads the rules from this variable: the JSON of `streamer:cors`.
ENV = "STREAMER_CORS"
DEFAULT_METHODS = ("GET", "POST", "OPTIONS")
DEFAULT_HEADERS = ("authorization", "content-type")
DEFAULT_MAX_AGE_S = 300
#: API Gateway takes a max age of -1 to 86400 seconds.
MAX_AGE_LIMIT_S = 86_400
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*"})


class InvalidCorsRules(ValueError):
    """The CORS setting names a malformed origin, an unknown method or an unknown key."""


@dataclass(frozen=True)
class CorsRules:
    """Allowed origins, methods and request headers, exposed headers and preflight max age."""

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = DEFAULT_METHODS
    allow_headers: tuple[str, ...] = DEFAULT_HEADERS
    expose_headers: tuple[str, ...] = ()
    max_age_s: int = DEFAULT_MAX_AGE_S

    @property
    def enabled(self) -> bool:
        return bool(self.allow_origins)

    def allows_origin(self, origin: str | None) -> bool:
        return bool(origin) and ("*" in self.allow_origins or origin in self.allow_origins)

    @classmethod
    def from_config(cls, given: Mapping[str, Any] | None) -> CorsRules:
        """Rules from the camelCase object of `streamer:cors` (or `STREAMER_CORS`)."""
        given = dict(given or {})
        keys = {
            "allowOrigins": "allow_origins",
            "allowMethods": "allow_methods",
            "allowHeaders": "allow_headers",
            "exposeHeaders": "expose_headers",
            "maxAgeS": "max_age_s",
        }
        unknown = set(given) - set(keys)
        if unknown:
            raise InvalidCorsRules(f"unknown keys {sorted(unknown)}; known: {sorted(keys)}")
        values: dict[str, Any] = {}
        for key, name in keys.items():
            if key not in given:
                continue
            value = given[key]
            if name == "max_age_s":
                values[name] = int(value)
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                values[name] = tuple(value)
            else:
                raise InvalidCorsRules(f"{key}: give a list of strings")
        rules = cls(**values)
        rules.check()
        return rules

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CorsRules:
        raw = (os.environ if env is None else env).get(ENV, "").strip()
        if not raw:
            return cls()
        try:
            given = json.loads(raw)
        except json.JSONDecodeError as error:
            raise InvalidCorsRules(f"{ENV} is not JSON: {error.msg}") from None
        if not isinstance(given, dict):
            raise InvalidCorsRules(f"{ENV} must be a JSON object")
        return cls.from_config(given)

    def check(self) -> None:
        for origin in self.allow_origins:
            if origin != "*" and not _ORIGIN.match(origin):
                raise InvalidCorsRules(
                    f"allowOrigins: {origin!r} is not an origin (scheme://host[:port], no path)"
                )
        for method in self.allow_methods:
            if method.upper() not in _METHODS:
                raise InvalidCorsRules(f"allowMethods: {method!r} is not an HTTP method")
        if not -1 <= self.max_age_s <= MAX_AGE_LIMIT_S:
            raise InvalidCorsRules(f"maxAgeS: {self.max_age_s} is not in [-1, {MAX_AGE_LIMIT_S}]")


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _allow_origin(rules: CorsRules, origin: str) -> dict[str, str]:
    if "*" in rules.allow_origins:
        return {"access-control-allow-origin": "*"}
    return {"access-control-allow-origin": origin, "vary": "Origin"}


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    """An OPTIONS request with `Origin` and `Access-Control-Request-Method`."""
    lowered = _lower(headers)
    return (
        method.upper() == "OPTIONS"
        and "origin" in lowered
        and "access-control-request-method" in lowered
    )


def preflight_headers(rules: CorsRules, headers: Mapping[str, str]) -> dict[str, str]:
    """The CORS headers of the answer to a preflight; none for an origin not allowed."""
    lowered = _lower(headers)
    origin = lowered.get("origin")
    if not rules.allows_origin(origin):
        return {}
    answer = _allow_origin(rules, origin or "")
    answer["access-control-allow-methods"] = ",".join(rules.allow_methods)
    if rules.allow_headers:
        answer["access-control-allow-headers"] = ",".join(rules.allow_headers)
    answer["access-control-max-age"] = str(rules.max_age_s)
    return answer


def response_headers(rules: CorsRules, headers: Mapping[str, str]) -> dict[str, str]:
    """The CORS headers added to an answer to a request from an allowed origin."""
    origin = _lower(headers).get("origin")
    if not rules.allows_origin(origin):
        return {}
    answer = _allow_origin(rules, origin or "")
    if rules.expose_headers:
        answer["access-control-expose-headers"] = ",".join(rules.expose_headers)
    return answer


def without_cors_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """An integration's headers minus its own CORS headers, which API Gateway ignores."""
    return {k: v for k, v in headers.items() if not k.lower().startswith("access-control-")}
