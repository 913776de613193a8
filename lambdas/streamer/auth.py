"""JWT verification for the `$connect` authorizer.

Only RS256 and ES256 are accepted (no `none`, no HMAC: a public key can never
be used as a shared secret). Keys come from a PEM in configuration or from a
JWKS URL; JWKS keys are cached and re-fetched when a token names an unknown
`kid`, at most once per `JWKS_REFRESH_S` so a flood of made-up kids cannot
hammer the issuer. Tokens never appear in logs or errors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt

from streamer.config import Settings
from streamer.events import Identity

ALGORITHMS = ["RS256", "ES256"]
#: Tokens longer than this are refused unread.
MAX_TOKEN_BYTES = 8 * 1024
JWKS_REFRESH_S = 60.0


class InvalidToken(Exception):
    """The token is missing, malformed, unsigned, expired or otherwise not acceptable.

    Its message names the reason class only, never the token.
    """


class JwksKeys:
    """Signing keys of a JWKS URL, cached, with rate-limited refreshes."""

    def __init__(
        self,
        url: str,
        *,
        fetch: Callable[[str], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        refresh_s: float = JWKS_REFRESH_S,
    ) -> None:
        self._url = url
        self._fetch = fetch or _fetch_json
        self._clock = clock
        self._refresh_s = refresh_s
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def key(self, kid: str | None) -> Any:
        with self._lock:
            if kid not in self._keys and self._may_refresh():
                self._refresh()
            if kid is None and len(self._keys) == 1:
                return next(iter(self._keys.values()))
            if kid not in self._keys:
                raise InvalidToken("unknown signing key")
            return self._keys[kid]

    def _may_refresh(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._refresh_s

    def _refresh(self) -> None:
        self._fetched_at = self._clock()
        self.fetches += 1
        try:
            document = self._fetch(self._url)
            key_set = jwt.PyJWKSet.from_dict(document)
        except Exception as error:
            raise InvalidToken("signing keys unavailable") from error
        self._keys = {
            k.key_id: k.key for k in key_set.keys if k.key_id and k.algorithm_name in ALGORITHMS
        } or {k.key_id: k.key for k in key_set.keys if k.key_id}


def _fetch_json(url: str) -> dict[str, Any]:
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=3) as response:
        return json.loads(response.read())


class TokenVerifier:
    """Verifies tokens against the configured key, issuer and audience."""

    def __init__(self, settings: Settings, *, jwks: JwksKeys | None = None) -> None:
        self._settings = settings
        self._pem_key = None
        if settings.jwt_public_key:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            self._pem_key = load_pem_public_key(settings.jwt_public_key.encode("utf-8"))
        self._jwks = jwks
        if self._jwks is None and settings.jwt_jwks_url:
            self._jwks = JwksKeys(settings.jwt_jwks_url)
        if self._pem_key is None and self._jwks is None:
            raise ValueError("no JWT key configured: set a public key or a JWKS URL")

    def verify(self, token: str) -> Identity:
        if not token or len(token.encode("utf-8")) > MAX_TOKEN_BYTES:
            raise InvalidToken("missing or oversized token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        if header.get("alg") not in ALGORITHMS:
            raise InvalidToken("algorithm not allowed")
        key = self._pem_key if self._pem_key is not None else self._jwks.key(header.get("kid"))
        algorithms = algorithms_for(key)
        if header.get("alg") not in algorithms:
            # An ES256 header with an RSA key (or the reverse) is refused here;
            # PyJWT would raise a TypeError rather than an InvalidTokenError.
            raise InvalidToken("algorithm does not match the key")
        settings = self._settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                leeway=settings.jwt_leeway_s,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": settings.jwt_audience is not None,
                    "verify_iss": settings.jwt_issuer is not None,
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise InvalidToken(type(error).__name__) from None
        issued_at = claims.get("iat")
        if isinstance(issued_at, int | float) and issued_at > time.time() + settings.jwt_leeway_s:
            raise InvalidToken("issued in the future")
        return identity_of_claims(claims)


def identity_of_claims(claims: Mapping[str, Any]) -> Identity:
    """The identity verified claims name: `sub`, `tenant_id`, optional `permissions`.

    Also reads the claims an HTTP API's JWT authorizer passes on, where a list
    claim arrives as one string, `"[a b]"`.
    """
    user_id, tenant_id = claims.get("sub"), claims.get("tenant_id")
    if not isinstance(user_id, str) or not user_id:
        raise InvalidToken("missing sub")
    if not isinstance(tenant_id, str) or not tenant_id:
        raise InvalidToken("missing tenant_id")
    permissions = claims.get("permissions") or []
    if isinstance(permissions, str) and permissions.startswith("["):
        permissions = permissions.strip("[]").split()
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        raise InvalidToken("permissions must be a list of strings")
    return Identity(
        user_id=user_id,
        tenant_id=tenant_id,
        permissions=frozenset(p for p in permissions if "," not in p),
    )


def algorithms_for(key: Any) -> list[str]:
    """The one algorithm a public key may verify: RS256 for RSA, ES256 for P-256."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return ["RS256"]
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return ["ES256"]
    return []


def tenant_allowed(identity: Identity, allowed: frozenset[str] | None) -> bool:
    return allowed is None or identity.tenant_id in allowed


def policy(principal_id: str, effect: str, method_arn: str, context: dict[str, str]) -> dict:
    """The IAM policy document an API Gateway REQUEST authorizer returns."""
    return {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": method_arn}
            ],
        },
        "context": context,
    }
