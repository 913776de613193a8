"""The `$connect` REQUEST authorizer, attacked with the token matrix of docs/protocol.md section 1.

Every case goes through the entry point `streamer.entry.authorizer.handler`
configured only through environment variables, exactly as Lambda runs it.
Valid tokens are minted by two libraries (PyJWT and joserfc) so the
authorizer is not only compatible with itself. Nothing leaves the machine:
JWKS documents come from an issuer served on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import traceback
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from streamer import auth
from streamer.entry import authorizer
from tests.conftest import (
    ALLOWED_TENANTS,
    DROP,
    ISSUER,
    FakeContext,
    KeySet,
    Signer,
    claims,
    key_set,
    load_event,
    mint,
)

JWKS_PATH = "/.well-known/jwks.json"
METHOD_ARN = load_event("authorizer_connect")["methodArn"]
LEEWAY_S = 30

# --- keys and tokens ----------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    return f"{b64json({'alg': alg, 'typ': 'JWT'})}.{b64json(payload)}."


def hs256_with_public_key(signer: Signer, payload: dict[str, Any]) -> str:
    """Key confusion: HMAC over the token with the verifier's public PEM as shared secret."""
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT'})}.{b64json(payload)}"
    mac = hmac.new(signer.public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def tamper_signature(token: str) -> str:
    # A middle character: every one of its 6 bits is signature (the last one has padding bits).
    header, payload, signature = token.split(".")
    i = len(signature) // 2
    flipped = "A" if signature[i] != "A" else "B"
    return f"{header}.{payload}.{signature[:i]}{flipped}{signature[i + 1 :]}"


def tamper_payload(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{b64json({**decoded, **changes})}.{signature}"


def padded(signer: Signer, target_bytes: int) -> str:
    """A correctly signed, otherwise valid token about `target_bytes` long (+/- 4)."""
    probe = mint(signer, claims(pad=""))
    pad = "x" * ((target_bytes - len(probe)) * 3 // 4)
    return mint(signer, claims(pad=pad))


# --- events and API Gateway ---------------------------------------------------------------


def authorizer_event(
    query: str | None = None,
    header: str | None = None,
    *,
    header_name: str = "Authorization",
    scheme: str = "Bearer",
) -> dict[str, Any]:
    """The documented WebSocket REQUEST authorizer event carrying the given token(s)."""
    event = load_event("authorizer_connect")
    if query is not None:
        event["queryStringParameters"] = {"token": query}
        event["multiValueQueryStringParameters"] = {"token": [query]}
    if header is not None:
        event["headers"][header_name] = f"{scheme} {header}"
        event["multiValueHeaders"][header_name] = [f"{scheme} {header}"]
    return event


def send(token: str, transport: str) -> dict[str, Any]:
    if transport == "query":
        return authorizer_event(query=token)
    if transport == "header":
        return authorizer_event(header=token)
    assert transport == "header-lowercase"
    return authorizer_event(header=token, header_name="authorization", scheme="bearer")


def tokens_in(event: dict[str, Any]) -> list[str]:
    found = [(event.get("queryStringParameters") or {}).get("token")]
    found += [
        v.partition(" ")[2] for k, v in event["headers"].items() if k.lower() == "authorization"
    ]
    return [t for t in found if t]


def token_fragments(tokens: list[str]) -> set[str]:
    """Each token, and its claims and signature parts (those long enough to be telling)."""
    fragments = set()
    for token in tokens:
        fragments.update(part for part in [token, *token.split(".")[1:]] if len(part) >= 16)
    return fragments


def policy_document(effect: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": METHOD_ARN}],
    }


def allow(user_id: str = "user-a", tenant_id: str = "tenant-1") -> dict[str, Any]:
    return {
        "principalId": user_id,
        "policyDocument": policy_document("Allow"),
        "context": {
            "user_id": user_id,
            "tenant_id": tenant_id,
            "permissions": "reports:write,requests:read:tenant",
        },
    }


def assert_unauthorized(event: dict[str, Any]) -> None:
    """The handler refuses with exactly `Exception("Unauthorized")` (API Gateway's 401)."""
    with pytest.raises(Exception) as caught:
        authorizer.handler(event, FakeContext())
    error = caught.value
    assert type(error) is Exception, f"{type(error).__name__}: {error}"
    assert str(error) == "Unauthorized"
    # What the Lambda runtime would print for it names no token.
    printed = "".join(traceback.format_exception(error))
    assert [s[:24] for s in token_fragments(tokens_in(event)) if s in printed] == []


# --- accepted tokens ----------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["query", "header", "header-lowercase"])
@pytest.mark.parametrize("library", ["pyjwt", "joserfc"])
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_a_valid_token_is_allowed_with_the_identity_as_string_context(
    configure, signers, kind, library, transport
):
    # GIVEN the authorizer configured with the issuer's RS256 or ES256 public key
    signer = signers[kind]
    configure(signer)
    token = mint(signer, library=library)

    # WHEN a client connects with a valid token minted by either library
    answer = authorizer.handler(send(token, transport), FakeContext())

    # THEN it is allowed on this very method, as sub, with a context of strings only
    assert answer == allow()
    assert all(isinstance(value, str) for value in answer["context"].values())


def test_the_same_token_in_query_and_header_is_allowed(configure, signers):
    # GIVEN a configured authorizer and a valid token
    configure(signers["rsa"])
    token = mint(signers["rsa"])

    # WHEN the client sends it both in the query string and as a Bearer header
    answer = authorizer.handler(authorizer_event(query=token, header=token), FakeContext())

    # THEN the two agree and the connection is allowed
    assert answer == allow()


def test_issued_at_slightly_in_the_future_is_within_leeway(configure, signers):
    # GIVEN an issuer whose clock runs 20 s ahead (leeway is 30 s)
    configure(signers["ec"])
    now = int(time.time())
    token = mint(signers["ec"], claims(iat=now + 20, nbf=now + 20))

    # WHEN its fresh token is presented
    answer = authorizer.handler(authorizer_event(query=token), FakeContext())

    # THEN clock skew within the leeway is tolerated
    assert answer == allow()


def test_a_token_just_under_the_size_limit_is_allowed(configure, signers):
    # GIVEN a valid token just under 8 KiB (so the oversized refusal is about size only)
    configure(signers["rsa"])
    token = padded(signers["rsa"], auth.MAX_TOKEN_BYTES - 100)
    assert auth.MAX_TOKEN_BYTES - 200 < len(token) <= auth.MAX_TOKEN_BYTES

    # WHEN it is presented
    answer = authorizer.handler(authorizer_event(query=token), FakeContext())

    # THEN it is allowed
    assert answer["policyDocument"] == policy_document("Allow")


def test_without_an_allowed_list_every_tenant_is_allowed(configure, signers):
    # GIVEN no allowed-tenants list
    configure(signers["rsa"], allowed_tenants=None)
    token = mint(signers["rsa"], claims(tenant_id="tenant-9"))

    # WHEN a user of any tenant connects
    answer = authorizer.handler(authorizer_event(query=token), FakeContext())

    # THEN the tenant is not restricted
    assert answer == allow(tenant_id="tenant-9")


# --- refused tokens -----------------------------------------------------------------------


def _now() -> int:
    return int(time.time())


#: Each case makes one token from the configured key set; every one must give a 401.
REFUSED: dict[str, Callable[[KeySet], str]] = {
    "expired": lambda k: mint(k.key, claims(iat=_now() - 900, nbf=_now() - 900, exp=_now() - 120)),
    "not yet valid (nbf)": lambda k: mint(k.key, claims(nbf=_now() + 120)),
    "issued in the future beyond leeway": lambda k: mint(k.key, claims(iat=_now() + 120)),
    "no exp": lambda k: mint(k.key, claims(exp=DROP)),
    "wrong issuer": lambda k: mint(k.key, claims(iss="https://evil.example.test/")),
    # CVE-2024-53861: a substring of the issuer must not match it.
    "issuer substring": lambda k: mint(k.key, claims(iss=ISSUER[:-1])),
    "no issuer": lambda k: mint(k.key, claims(iss=DROP)),
    "wrong audience": lambda k: mint(k.key, claims(aud="another-api")),
    "no audience": lambda k: mint(k.key, claims(aud=DROP)),
    "missing sub": lambda k: mint(k.key, claims(sub=DROP)),
    "empty sub": lambda k: mint(k.key, claims(sub="")),
    "missing tenant_id": lambda k: mint(k.key, claims(tenant_id=DROP)),
    "empty tenant_id": lambda k: mint(k.key, claims(tenant_id="")),
    "tenant_id not a string": lambda k: mint(k.key, claims(tenant_id=["tenant-1"])),
    "permissions not a list": lambda k: mint(k.key, claims(permissions="admin")),
    "alg none": lambda k: unsigned(claims()),
    "alg None": lambda k: unsigned(claims(), alg="None"),
    "HS256 with the public key as secret": lambda k: hs256_with_public_key(k.key, claims()),
    "signature tampered": lambda k: tamper_signature(mint(k.key)),
    "signature stripped": lambda k: mint(k.key).rpartition(".")[0] + ".",
    "payload tampered": lambda k: tamper_payload(mint(k.key), tenant_id="tenant-2"),
    "garbage": lambda k: "this-is-not-a-jwt",
    "three garbage parts": lambda k: "a.b.c",
    "oversized": lambda k: padded(k.key, auth.MAX_TOKEN_BYTES + 200),
    "signed by another key": lambda k: mint(k.same_type_other, headers={"kid": k.key.kid}),
    # PyJWT raises TypeError (not an InvalidTokenError) for an ES256 header with an RSA key
    # or the reverse; the authorizer must still answer 401, not crash (500).
    "signed by a key of the other type": lambda k: mint(k.other_type, headers={"kid": k.key.kid}),
    "unsigned, header alg of the other key type": lambda k: (
        f"{b64json({'alg': k.other_type.alg})}.{b64json(claims())}.AAAA"
    ),
}


@pytest.mark.parametrize("transport", ["query", "header"])
@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_a_bad_token_is_unauthorized(configure, signers, kind, case, transport):
    # GIVEN the authorizer configured with an RS256 or ES256 key
    keys = key_set(signers, kind)
    configure(keys.key)
    token = REFUSED[case](keys)
    if case == "oversized":
        assert len(token) > auth.MAX_TOKEN_BYTES

    # WHEN a client presents the bad token
    event = send(token, transport)

    # THEN the handshake is refused with 401 (having called no AWS API: the unit layer refuses
    # sockets; tests/functional/test_authorizer.py shows a refused handshake records nothing)
    assert_unauthorized(event)


def test_a_missing_token_is_unauthorized(configure, signers):
    # GIVEN a configured authorizer
    configure(signers["rsa"])

    # WHEN a handshake carries no token, an empty one, or a non-Bearer Authorization
    events = [
        authorizer_event(),
        authorizer_event(query=""),
        authorizer_event(header=""),
        authorizer_event(header=mint(signers["rsa"]), scheme="Basic"),
    ]

    # THEN each is refused with 401
    for event in events:
        assert_unauthorized(event)


def test_query_and_header_tokens_that_disagree_are_unauthorized(configure, signers):
    # GIVEN two tokens, each valid on its own, for different users
    configure(signers["rsa"])
    mine = mint(signers["rsa"])
    theirs = mint(signers["rsa"], claims(sub="user-b"))
    assert authorizer.handler(authorizer_event(query=theirs), FakeContext())["principalId"] == (
        "user-b"
    )

    # WHEN a client sends one in the query string and the other as Bearer header
    # THEN the ambiguity is refused with 401, whichever way round
    assert_unauthorized(authorizer_event(query=mine, header=theirs))
    assert_unauthorized(authorizer_event(query=theirs, header=mine))


def test_a_tenant_not_in_the_allowed_list_is_denied_without_identity(configure, signers):
    # GIVEN an allowed list of tenant-1 and tenant-2
    configure(signers["rsa"])
    token = mint(signers["rsa"], claims(tenant_id="tenant-3"))

    # WHEN a validly signed user of tenant-3 connects
    answer = authorizer.handler(authorizer_event(query=token), FakeContext())

    # THEN a Deny policy (403) comes back, with no identity in the context
    assert answer == {
        "principalId": "user-a",
        "policyDocument": policy_document("Deny"),
        "context": {},
    }


# --- fuzzing ------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
json_values = st.one_of(json_scalars, st.lists(json_scalars, max_size=3))
claim_values = st.fixed_dictionaries(
    {},
    optional={
        name: json_values
        for name in ("sub", "tenant_id", "permissions", "iss", "aud", "iat", "nbf", "exp")
    },
)


@st.composite
def jwt_shaped(draw: st.DrawFn) -> str:
    header = draw(
        st.fixed_dictionaries(
            {"alg": st.sampled_from(["RS256", "ES256", "HS256", "none", "PS256", "EdDSA"])},
            optional={name: json_values for name in ("kid", "typ", "jku", "x5u", "crit", "b64")},
        )
    )
    payload = draw(st.one_of(claim_values, json_values))
    signature = draw(st.binary(max_size=300))
    return f"{b64json(header)}.{b64json(payload)}.{b64url(signature)}"


@hypothesis_settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(token=st.one_of(st.text(max_size=400), jwt_shaped()))
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_arbitrary_unsigned_input_is_always_a_clean_401(configure, signers, kind, token):
    # GIVEN the authorizer with an RSA or EC public key
    configure(signers[kind])

    # WHEN any string, or any JWT-shaped string with a bogus signature, is presented
    # THEN the answer is always exactly Exception("Unauthorized")
    assert_unauthorized(authorizer_event(query=token))


@hypothesis_settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(overrides=claim_values)
def test_correctly_signed_odd_claims_give_a_policy_or_a_clean_401(configure, signers, overrides):
    # GIVEN the authorizer with an ES256 key, and a correctly signed token with odd claims
    configure(signers["ec"])
    token_claims = claims(**overrides)
    body = json.dumps(token_claims).encode()  # PyJWT's encode() would refuse some claims
    token = jwt.api_jws.encode(body, signers["ec"].private, algorithm="ES256")

    # WHEN it is presented
    try:
        answer = authorizer.handler(authorizer_event(query=token), FakeContext())
    except Exception as error:
        # THEN a refusal is exactly Exception("Unauthorized") ...
        assert type(error) is Exception and str(error) == "Unauthorized"
        return

    # ... and an answer is a policy whose context holds only the token's strings
    effect = answer["policyDocument"]["Statement"][0]["Effect"]
    assert effect in {"Allow", "Deny"}
    assert answer["policyDocument"]["Statement"][0]["Resource"] == METHOD_ARN
    assert isinstance(token_claims["sub"], str) and token_claims["sub"]
    assert answer["principalId"] == token_claims["sub"]
    if effect == "Allow":
        assert token_claims["tenant_id"] in ALLOWED_TENANTS.split(",")
        assert answer["context"]["user_id"] == token_claims["sub"]
        assert answer["context"]["tenant_id"] == token_claims["tenant_id"]
        assert all(isinstance(value, str) for value in answer["context"].values())
    else:
        assert answer["context"] == {}
