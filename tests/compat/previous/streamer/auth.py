"""JWT verification for the `$connect` authorizer.

Only RS256 and ES256 are accepted (no `none`, no HMAC: a public key can never
be used as a shared secret). Keys come from a PEM in configuration or from a
JWKS URL, through PyJWT's `PyJWKClient`: the key set is cached for
`JWKS_LIFESPAN_S` and then fetched again, so keys the issuer retires stop being
accepted; a token naming an unknown `kid` forces a refresh at most once per
`JWKS_REFRESH_S`, and so does a failed fetch, so a flood of made-up kids or an
issuer outage cannot hammer the issuer. Tokens never appear in logs or errors.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jwt

from streamer.config import Settings
from streamer.events import Identity

ALGORITHMS = ["RS256", "ES256"]
#: Tokens longer than this are refused unread.
MAX_TOKEN_BYTES = 8 * 1024
#: How long a fetched key set is used before it is fetched again (PyJWKClient's
#: `lifespan`, its default too).
JWKS_LIFESPAN_S = 300.0
#: At most one unplanned fetch (unknown kid, or retry after a failure) per this.
JWKS_REFRESH_S = 60.0
#: The authorizer runs for at most 10 s; PyJWKClient's default timeout is 30 s.
JWKS_TIMEOUT_S = 3.0


class InvalidToken(Exception):
    """The token is missing, malformed, unsigned, expired or otherwise not acceptable.

    Its message names the reason class only, never the token.
    """


class _IssuerKeys(jwt.PyJWKClient):
    """PyJWKClient that also waits `cooldown_duration` after a failed fetch.

    PyJWKClient's cooldown starts at a successful fetch only ("Every successful fetch
    starts this cooldown", PyJWT 2.15 `PyJWKClient` docstring); without this, every
    token would try an unreachable issuer again and wait for its timeout.
    """

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri, **options)
        self._failed_at: float | None = None

    def fetch_data(self) -> Any:
        failed_at = self._failed_at
        if failed_at is not None and time.monotonic() - failed_at < self.cooldown_duration:
            raise jwt.PyJWKClientConnectionError("the issuer failed moments ago")
        try:
            document = super().fetch_data()
        except Exception:
            self._failed_at = time.monotonic()
            raise
        self._failed_at = None
        return document


class JwksKeys:
    """The signing keys of a JWKS URL: cached for a lifespan, refreshed on unknown kids.

    PyJWT documents the behaviour relied on in `PyJWKClient`'s docstring (jwt/jwks_client.py
    at 2.15.1): "lifespan: Time in seconds before the cached JWK Set expires", and
    "Unknown key IDs can trigger one forced refresh after the cooldown period configured
    by cooldown_duration" (PyJWT pull request 781 added the lifespan cache).
    """

    def __init__(
        self,
        url: str,
        *,
        lifespan_s: float = JWKS_LIFESPAN_S,
        refresh_s: float = JWKS_REFRESH_S,
        timeout_s: float = JWKS_TIMEOUT_S,
    ) -> None:
        self._client = _IssuerKeys(
            url, lifespan=lifespan_s, cooldown_duration=refresh_s, timeout=timeout_s
        )

    def key(self, kid: str | None) -> Any:
        """The public key `kid` names; without a kid, the set's only key."""
        try:
            if kid is None:
                keys = self._client.get_signing_keys()
                if len(keys) != 1:
                    raise InvalidToken("no kid, and the issuer has several keys")
                return keys[0].key
            return self._client.get_signing_key(kid).key
        except InvalidToken:
            raise
        except jwt.PyJWKClientConnectionError as error:
            raise InvalidToken("signing keys unavailable") from error
        except jwt.PyJWKClientError as error:
            raise InvalidToken("unknown signing key") from error
        except Exception as error:
            # A JWKS that is not JSON, or holds no usable key, is an issuer fault too.
            raise InvalidToken("signing keys unavailable") from error


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
    """The identity verified claims name: `sub`, `tenant_id`, optional `permissions`."""
    user_id, tenant_id = claims.get("sub"), claims.get("tenant_id")
    if not isinstance(user_id, str) or not user_id:
        raise InvalidToken("missing sub")
    if not isinstance(tenant_id, str) or not tenant_id:
        raise InvalidToken("missing tenant_id")
    permissions = claims.get("permissions") or []
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
