"""The authorizer's token checks, against a configured public key (pure: no JWKS, no sockets).

Boundaries pinned: expiry with and without leeway (PyJWT rejects a token when
`exp <= now - leeway`, its `_validate_exp`), `iat` in the future past the
leeway, the 8 KiB token limit, and which claims make an identity.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import jwt
import jwt.api_jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from streamer import auth
from streamer.auth import (
    MAX_TOKEN_BYTES,
    InvalidToken,
    TokenVerifier,
    algorithms_for,
    identity_of_claims,
    tenant_allowed,
)
from streamer.config import Settings
from streamer.events import Identity

NOW = 1_900_000_000
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def verifier(key: Any = RSA_KEY, **settings: Any) -> TokenVerifier:
    return TokenVerifier(Settings("c", "r", "s", "us-east-1", jwt_public_key=pem(key), **settings))


def mint(key: Any = RSA_KEY, alg: str = "RS256", headers: Any = None, **claims: Any) -> str:
    body = {"sub": "alice", "tenant_id": "t1", "exp": NOW + 60, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, alg, headers)


class FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> datetime:
        return datetime.fromtimestamp(NOW, tz)


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """PyJWT reads `datetime.now()` (jwt/api_jwt.py), the verifier `time.time()`: both see NOW."""
    monkeypatch.setattr(time, "time", lambda: float(NOW))
    monkeypatch.setattr(jwt.api_jwt, "datetime", FrozenDatetime)
    yield


def test_a_valid_token_names_its_user_tenant_and_permissions() -> None:
    token = mint(permissions=["requests:read", "a,b"])
    assert verifier().verify(token) == Identity(
        user_id="alice", tenant_id="t1", permissions=frozenset({"requests:read"})
    )


def test_an_es256_token_is_verified_with_a_p256_key() -> None:
    assert verifier(EC_KEY).verify(mint(EC_KEY, "ES256")).user_id == "alice"


def test_a_token_expiring_right_now_is_refused_without_leeway() -> None:
    with pytest.raises(InvalidToken, match="ExpiredSignatureError"):
        verifier(jwt_leeway_s=0).verify(mint(exp=NOW))


def test_a_token_expiring_one_second_from_now_is_accepted_without_leeway() -> None:
    assert verifier(jwt_leeway_s=0).verify(mint(exp=NOW + 1)).user_id == "alice"


def test_a_token_expired_within_the_leeway_is_accepted() -> None:
    assert verifier(jwt_leeway_s=30).verify(mint(exp=NOW - 29)).user_id == "alice"


def test_a_token_expired_exactly_the_leeway_ago_is_refused() -> None:
    with pytest.raises(InvalidToken, match="ExpiredSignatureError"):
        verifier(jwt_leeway_s=30).verify(mint(exp=NOW - 30))


def test_a_token_issued_in_the_future_past_the_leeway_is_refused() -> None:
    with pytest.raises(InvalidToken, match="ImmatureSignatureError"):
        verifier(jwt_leeway_s=30).verify(mint(iat=NOW + 31))


def test_a_token_issued_within_the_leeway_of_now_is_accepted() -> None:
    assert verifier(jwt_leeway_s=30).verify(mint(iat=NOW + 30)).user_id == "alice"


def test_a_token_without_expiry_is_refused() -> None:
    with pytest.raises(InvalidToken, match="MissingRequiredClaimError"):
        verifier().verify(mint(exp=None))


def test_a_token_of_exactly_the_size_limit_is_read_and_one_byte_more_is_not() -> None:
    base = mint()
    # Padding inside the signature segment keeps the token unreadable but its length exact.
    at_limit = base + "A" * (MAX_TOKEN_BYTES - len(base))
    with pytest.raises(InvalidToken) as read:
        verifier().verify(at_limit)
    assert str(read.value) != "missing or oversized token"
    with pytest.raises(InvalidToken, match="missing or oversized token"):
        verifier().verify(at_limit + "A")


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(InvalidToken, match="missing or oversized token"):
        verifier().verify("")


def test_a_token_that_is_not_a_jwt_is_malformed() -> None:
    with pytest.raises(InvalidToken, match="malformed token"):
        verifier().verify("not-a-token")


def test_an_hmac_token_is_refused_whatever_its_secret() -> None:
    token = jwt.encode({"sub": "alice", "tenant_id": "t1", "exp": NOW + 60}, "s" * 32, "HS256")
    with pytest.raises(InvalidToken, match="algorithm not allowed"):
        verifier().verify(token)


def test_an_es256_header_on_an_rsa_key_is_refused() -> None:
    with pytest.raises(InvalidToken, match="algorithm does not match the key"):
        verifier(RSA_KEY).verify(mint(EC_KEY, "ES256"))


def test_the_issuer_and_audience_are_checked_when_configured() -> None:
    strict = verifier(jwt_issuer="https://issuer", jwt_audience="streamer")
    assert strict.verify(mint(iss="https://issuer", aud="streamer")).user_id == "alice"
    with pytest.raises(InvalidToken, match="InvalidIssuerError"):
        strict.verify(mint(iss="https://other", aud="streamer"))
    with pytest.raises(InvalidToken, match="InvalidAudienceError"):
        strict.verify(mint(iss="https://issuer", aud="other"))


def test_without_issuer_and_audience_configured_any_are_accepted() -> None:
    assert verifier().verify(mint(iss="https://any", aud="any")).user_id == "alice"


def test_a_verifier_needs_a_key() -> None:
    with pytest.raises(ValueError, match="no JWT key configured"):
        TokenVerifier(Settings("c", "r", "s", "us-east-1"))


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"tenant_id": "t1"}, "missing sub"),
        ({"sub": "", "tenant_id": "t1"}, "missing sub"),
        ({"sub": 7, "tenant_id": "t1"}, "missing sub"),
        ({"sub": "alice"}, "missing tenant_id"),
        ({"sub": "alice", "tenant_id": ""}, "missing tenant_id"),
        ({"sub": "alice", "tenant_id": 3}, "missing tenant_id"),
        ({"sub": "alice", "tenant_id": "t1", "permissions": "admin"}, "list of strings"),
        ({"sub": "alice", "tenant_id": "t1", "permissions": ["a", 1]}, "list of strings"),
    ],
)
def test_claims_without_a_user_or_tenant_or_with_bad_permissions_make_no_identity(
    claims: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidToken, match=reason):
        identity_of_claims(claims)


def test_permissions_may_be_absent_or_null() -> None:
    for claims in (
        {"sub": "a", "tenant_id": "t"},
        {"sub": "a", "tenant_id": "t", "permissions": None},
    ):
        assert identity_of_claims(claims).permissions == frozenset()


def test_each_key_type_verifies_one_algorithm() -> None:
    assert algorithms_for(RSA_KEY.public_key()) == ["RS256"]
    assert algorithms_for(EC_KEY.public_key()) == ["ES256"]
    assert algorithms_for(ec.generate_private_key(ec.SECP384R1()).public_key()) == []
    assert algorithms_for("a shared secret") == []


def test_a_tenant_is_allowed_when_no_list_is_configured_or_the_list_names_it() -> None:
    identity = Identity(user_id="alice", tenant_id="t1")
    assert tenant_allowed(identity, None)
    assert tenant_allowed(identity, frozenset({"t1", "t2"}))
    assert not tenant_allowed(identity, frozenset({"t2"}))
    assert not tenant_allowed(identity, frozenset())


def test_the_accepted_algorithms_are_rs256_and_es256_only() -> None:
    assert auth.ALGORITHMS == ["RS256", "ES256"]


class Keys:
    """A key source standing in for the issuer's JWKS: records the kids it is asked for."""

    def __init__(self, key: Any) -> None:
        self.public = key.public_key()
        self.asked: list[str | None] = []

    def key(self, kid: str | None) -> Any:
        self.asked.append(kid)
        return self.public


def test_with_a_key_source_the_token_s_kid_picks_the_key() -> None:
    keys = Keys(EC_KEY)
    settings = Settings("c", "r", "s", "us-east-1", jwt_jwks_url="https://issuer/jwks")
    verifying = TokenVerifier(settings, jwks=keys)  # type: ignore[arg-type]
    assert verifying.verify(mint(EC_KEY, "ES256", headers={"kid": "k-2"})).user_id == "alice"
    assert verifying.verify(mint(EC_KEY, "ES256")).user_id == "alice"
    assert keys.asked == ["k-2", None]


def test_a_jwks_url_alone_makes_a_key_source_for_that_url() -> None:
    settings = Settings("c", "r", "s", "us-east-1", jwt_jwks_url="https://issuer/jwks")
    made = TokenVerifier(settings)._jwks
    assert isinstance(made, auth.JwksKeys)
    assert made._client.uri == "https://issuer/jwks"


def test_a_configured_key_source_is_used_rather_than_a_new_one() -> None:
    keys = Keys(RSA_KEY)
    settings = Settings("c", "r", "s", "us-east-1", jwt_jwks_url="https://issuer/jwks")
    assert TokenVerifier(settings, jwks=keys)._jwks is keys  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "missing or oversized token"),
        ("not-a-token", "malformed token"),
        (
            jwt.encode({"sub": "a", "tenant_id": "t", "exp": NOW + 9}, "s" * 32, "HS256"),
            "algorithm not allowed",
        ),
        (mint(EC_KEY, "ES256"), "algorithm does not match the key"),
        (mint(tenant_id=None), "missing tenant_id"),
        (mint(sub=""), "missing sub"),
        (mint(permissions="all"), "permissions must be a list of strings"),
    ],
)
def test_each_refusal_names_its_reason_and_nothing_else(token: str, reason: str) -> None:
    with pytest.raises(InvalidToken) as raised:
        verifier(RSA_KEY).verify(token)
    assert str(raised.value) == reason


def test_a_verifier_without_a_key_says_what_to_configure() -> None:
    with pytest.raises(ValueError) as raised:
        TokenVerifier(Settings("c", "r", "s", "us-east-1"))
    assert str(raised.value) == "no JWT key configured: set a public key or a JWKS URL"


def test_a_fractional_iat_past_the_leeway_is_refused_though_pyjwt_truncates_it() -> None:
    # PyJWT compares int(iat) (jwt/api_jwt.py `_validate_iat`): NOW + 30.5 passes its check.
    with pytest.raises(InvalidToken) as raised:
        verifier(jwt_leeway_s=30).verify(mint(iat=NOW + 30.5))
    assert str(raised.value) == "issued in the future"
