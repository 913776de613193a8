"""The `$connect` REQUEST authorizer, attacked with the token matrix of docs/protocol.md section 1.

Every case goes through the entry point `streamer.entry.authorizer.handler`
configured only through environment variables, exactly as Lambda runs it.
Valid tokens are minted by two libraries (PyJWT and joserfc) so the
authorizer is not only compatible with itself. Nothing leaves the machine:
JWKS documents come from an issuer served on loopback.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import boto3
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, RSAKey

from streamer import auth, config, runtime
from streamer.auth import InvalidToken, JwksKeys, TokenVerifier
from streamer.config import Settings
from streamer.entry import authorizer, connect
from streamer.logs import JsonFormatter
from tests.conftest import REGION, TABLES, FakeContext, load_event

ISSUER = "https://issuer.example.test/"
AUDIENCE = "streamer-api"
ALLOWED_TENANTS = "tenant-1,tenant-2"
JWKS_PATH = "/.well-known/jwks.json"
METHOD_ARN = load_event("authorizer_connect")["methodArn"]
LEEWAY_S = 30
DROP = object()  # a claim value meaning "leave this claim out"

# --- keys and tokens ----------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """A signing key pair and the JWS algorithm it is used with."""

    alg: str
    kid: str
    private: Any

    @property
    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    @property
    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_jwk(self) -> dict[str, Any]:
        algorithm = (
            jwt.algorithms.RSAAlgorithm if self.alg == "RS256" else jwt.algorithms.ECAlgorithm
        )
        jwk = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


@dataclass(frozen=True)
class KeySet:
    """The configured key, another key of the same type, and a key of the other type."""

    key: Signer
    same_type_other: Signer
    other_type: Signer


@pytest.fixture(scope="module")
def signers() -> dict[str, Signer]:
    def rsa_key() -> Any:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def ec_key() -> Any:
        return ec.generate_private_key(ec.SECP256R1())

    return {
        "rsa": Signer("RS256", "rsa-1", rsa_key()),
        "rsa_other": Signer("RS256", "rsa-2", rsa_key()),
        "ec": Signer("ES256", "ec-1", ec_key()),
        "ec_other": Signer("ES256", "ec-2", ec_key()),
    }


def key_set(signers: dict[str, Signer], kind: str) -> KeySet:
    other = "ec" if kind == "rsa" else "rsa"
    return KeySet(signers[kind], signers[f"{kind}_other"], signers[other])


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for tenant-1's user-a; `name=DROP` leaves a claim out."""
    now = int(time.time())
    values = {
        "sub": "user-a",
        "tenant_id": "tenant-1",
        "permissions": ["requests:read:tenant", "reports:write"],
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        **overrides,
    }
    return {name: value for name, value in values.items() if value is not DROP}


def mint(
    signer: Signer,
    payload: dict[str, Any] | None = None,
    *,
    library: str = "pyjwt",
    headers: dict[str, Any] | None = None,
) -> str:
    payload = claims() if payload is None else payload
    header = {"kid": signer.kid, **(headers or {})}
    if library == "pyjwt":
        return jwt.encode(payload, signer.private, algorithm=signer.alg, headers=header)
    assert library == "joserfc"
    key_type = RSAKey if signer.alg == "RS256" else ECKey
    key = key_type.import_key(signer.private_pem)
    return jose_jwt.encode({"alg": signer.alg, "typ": "JWT", **header}, payload, key)


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


def connection_count() -> int:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    return dynamodb.scan(TableName=TABLES[config.CONNECTIONS_TABLE], Select="COUNT")["Count"]


def api_gateway_connect(event: dict[str, Any]) -> int:
    """What API Gateway does with a handshake: authorizer, then `$connect` only on Allow."""
    try:
        answer = authorizer.handler(event, FakeContext())
    except Exception as error:
        return 401 if str(error) == "Unauthorized" else 500
    if answer["policyDocument"]["Statement"][0]["Effect"] != "Allow":
        return 403
    connect_event = load_event("connect")
    connect_event["requestContext"]["authorizer"] = {
        "principalId": answer["principalId"],
        **answer["context"],
    }
    return connect.handler(connect_event, FakeContext())["statusCode"]


# --- configuration ------------------------------------------------------------------------


@pytest.fixture
def configure(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Configure the authorizer through its environment, as the components do."""

    def apply(
        signer: Signer | None = None,
        *,
        jwks_url: str | None = None,
        allowed_tenants: str | None = ALLOWED_TENANTS,
    ) -> None:
        for name in (config.JWT_PUBLIC_KEY, config.JWT_JWKS_URL, config.ALLOWED_TENANTS):
            monkeypatch.delenv(name, raising=False)
        if signer is not None:
            monkeypatch.setenv(config.JWT_PUBLIC_KEY, signer.public_pem)
        if jwks_url is not None:
            monkeypatch.setenv(config.JWT_JWKS_URL, jwks_url)
        if allowed_tenants is not None:
            monkeypatch.setenv(config.ALLOWED_TENANTS, allowed_tenants)
        monkeypatch.setenv(config.JWT_ISSUER, ISSUER)
        monkeypatch.setenv(config.JWT_AUDIENCE, AUDIENCE)
        monkeypatch.setenv(config.LOG_LEVEL, "DEBUG")
        runtime.reset()
        authorizer.reset()

    return apply


class FakeIssuer:
    """An identity provider's JWKS endpoint on loopback, counting the fetches it serves.

    The authorizer fetches it as it fetches a real issuer: through PyJWKClient's urllib.
    """

    def __init__(self, *signers: Signer) -> None:
        self.signers = list(signers)
        self.calls: list[str] = []
        self.failing = False
        issuer = self

        class Jwks(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.calls.append(issuer.base + self.path)
                if issuer.failing:
                    self.send_error(503)
                    return
                keys = [signer.public_jwk() for signer in issuer.signers]
                document = json.dumps({"keys": keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.url = self.base + JWKS_PATH
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


@pytest.fixture
def issuer(signers) -> Iterator[FakeIssuer]:
    """A JWKS endpoint serving rsa-1; tests change `signers` and `failing` as they go."""
    served = FakeIssuer(signers["rsa"])
    try:
        yield served
    finally:
        served.close()


class FakeClock:
    """A monotonic clock the test moves: PyJWT's JWKS cache and cooldown, and ours, read it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    timing = SimpleNamespace(monotonic=fake, time=time.time)
    for module in (jwt.jwks_client, jwt.jwk_set_cache, jwt.api_jwk, auth):
        monkeypatch.setattr(module, "time", timing)
    return fake


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

    # THEN the handshake is refused with 401, and no connection is recorded
    assert_unauthorized(event)
    assert connection_count() == 0


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
    assert connection_count() == 0


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


def test_a_refused_handshake_never_creates_a_connection_record(configure, signers):
    # GIVEN API Gateway's handshake: authorizer first, the $connect route only on Allow
    keys = key_set(signers, "rsa")
    configure(keys.key)

    # WHEN every bad token of the matrix, and a tenant that is not allowed, try to connect
    statuses = {
        case: api_gateway_connect(send(make(keys), "query")) for case, make in REFUSED.items()
    }
    statuses["no token"] = api_gateway_connect(authorizer_event())
    denied = mint(keys.key, claims(tenant_id="tenant-3"))
    statuses["tenant not allowed"] = api_gateway_connect(authorizer_event(query=denied))

    # THEN they get 401 (403 for the tenant) and the connections table stays empty
    assert statuses == {**dict.fromkeys(REFUSED, 401), "no token": 401, "tenant not allowed": 403}
    assert connection_count() == 0
    # ... while a valid token does get a record (so the check above can see one)
    assert api_gateway_connect(authorizer_event(query=mint(keys.key))) == 200
    assert connection_count() == 1


# --- JWKS ---------------------------------------------------------------------------------


def test_jwks_keys_are_cached_for_their_lifespan(issuer, clock, signers):
    # GIVEN the JWKS keys of an issuer serving rsa-1, just fetched
    keys = JwksKeys(issuer.url)
    first = keys.key("rsa-1")
    assert first.public_numbers() == signers["rsa"].private.public_key().public_numbers()

    # WHEN the key is asked for again and again within the lifespan
    for _ in range(9):
        clock.advance(30)
        assert keys.key("rsa-1") is first

    # THEN the issuer was fetched exactly once, at its configured URL
    assert issuer.calls == [issuer.url]
    assert auth.JWKS_LIFESPAN_S > 9 * 30


def test_jwks_keys_expire_so_a_retired_key_stops_being_accepted(issuer, clock, signers):
    # GIVEN the JWKS keys of an issuer serving rsa-1 and ec-1, fetched and in use
    issuer.signers.append(signers["ec"])
    keys = JwksKeys(issuer.url)
    keys.key("rsa-1")

    # WHEN the issuer retires rsa-1 (its kid is still cached)
    issuer.signers = [signers["ec"]]
    clock.advance(auth.JWKS_LIFESPAN_S - 1)
    assert keys.key("rsa-1") is not None
    assert len(issuer.calls) == 1

    # THEN once the keys' lifespan is over they are fetched again and rsa-1 is refused
    clock.advance(2)
    with pytest.raises(InvalidToken, match="unknown signing key"):
        keys.key("rsa-1")
    assert keys.key("ec-1") is not None
    assert len(issuer.calls) == 2


def test_jwks_flood_of_unknown_kids_fetches_at_most_once_per_interval(issuer, clock):
    # GIVEN JWKS keys, warm, at the end of a refresh interval
    keys = JwksKeys(issuer.url)
    keys.key("rsa-1")
    clock.advance(auth.JWKS_REFRESH_S)

    # WHEN 100 made-up kids arrive within the next interval
    for n in range(100):
        with pytest.raises(InvalidToken):
            keys.key(f"made-up-{n}")
        clock.advance(0.5)

    # THEN all are refused and the issuer was fetched at most once more
    assert auth.JWKS_REFRESH_S > 100 * 0.5
    assert len(issuer.calls) <= 2


def test_jwks_flood_on_a_cold_cache_fetches_once(issuer, clock):
    # GIVEN JWKS keys never fetched
    keys = JwksKeys(issuer.url)

    # WHEN 100 unknown kids arrive at once
    for n in range(100):
        with pytest.raises(InvalidToken):
            keys.key(f"made-up-{n}")

    # THEN exactly one fetch happened
    assert issuer.calls == [issuer.url]


def test_jwks_rotation_is_picked_up_after_the_interval(issuer, clock, signers):
    # GIVEN warm keys holding rsa-1, and the issuer then rotating to ec-1 only
    keys = JwksKeys(issuer.url)
    keys.key("rsa-1")
    issuer.signers = [signers["ec"]]

    # WHEN the new kid shows up within the interval, THEN it is not fetched yet
    clock.advance(10)
    with pytest.raises(InvalidToken):
        keys.key("ec-1")
    assert len(issuer.calls) == 1

    # WHEN it shows up after the interval, THEN it is fetched once and cached
    clock.advance(auth.JWKS_REFRESH_S)
    new = keys.key("ec-1")
    assert new.public_numbers() == signers["ec"].private.public_key().public_numbers()
    for _ in range(5):
        assert keys.key("ec-1") is new
    assert len(issuer.calls) == 2

    # AND the retired key is no longer accepted, without another fetch
    with pytest.raises(InvalidToken):
        keys.key("rsa-1")
    assert len(issuer.calls) == 2


def test_jwks_fetch_failure_is_an_invalid_token_and_is_rate_limited(issuer, clock):
    # GIVEN an issuer that answers 503
    issuer.failing = True
    keys = JwksKeys(issuer.url)

    # WHEN keys are asked for during the outage
    for _ in range(20):
        with pytest.raises(InvalidToken, match="signing keys unavailable"):
            keys.key("rsa-1")

    # THEN each is refused, the issuer was tried once, and is tried again after the interval
    assert len(issuer.calls) == 1
    issuer.failing = False
    clock.advance(auth.JWKS_REFRESH_S)
    assert keys.key("rsa-1") is not None
    assert len(issuer.calls) == 2


def test_jwks_token_without_kid_uses_the_only_key(issuer, clock, signers):
    # GIVEN an issuer with a single key  WHEN a token names no kid  THEN that key is used
    keys = JwksKeys(issuer.url)
    expected = signers["rsa"].private.public_key().public_numbers()
    assert keys.key(None).public_numbers() == expected
    # ... but with two keys a token must say which
    issuer.signers.append(signers["ec"])
    clock.advance(auth.JWKS_LIFESPAN_S + 1)
    with pytest.raises(InvalidToken):
        keys.key(None)


@pytest.mark.parametrize("library", ["pyjwt", "joserfc"])
def test_token_verifier_with_jwks_verifies_a_token_whose_kid_is_in_the_set(
    issuer, signers, library
):
    # GIVEN a verifier whose keys come from a JWKS with an RSA and an EC key
    issuer.signers.append(signers["ec"])
    settings = Settings(
        connections_table="c",
        requests_table="r",
        subscriptions_table="s",
        region=REGION,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    verifier = TokenVerifier(settings, jwks=JwksKeys(issuer.url))

    # WHEN tokens signed by either key, naming its kid, are verified
    identities = [verifier.verify(mint(signers[kind], library=library)) for kind in ("rsa", "ec")]

    # THEN both give the identity; one fetch served both
    for identity in identities:
        assert (identity.user_id, identity.tenant_id) == ("user-a", "tenant-1")
        assert identity.permissions == {"reports:write", "requests:read:tenant"}
    assert issuer.calls == [issuer.url]

    # AND a token of a key outside the set, or naming another key's kid, is refused
    with pytest.raises(InvalidToken):
        verifier.verify(mint(signers["rsa_other"]))
    with pytest.raises(InvalidToken):
        verifier.verify(mint(signers["rsa_other"], headers={"kid": "rsa-1"}))


@pytest.fixture
def jwks_issuer(configure, issuer, signers) -> FakeIssuer:
    """The authorizer configured with the URL of a JWKS endpoint serving rsa-1 and ec-1."""
    issuer.signers.append(signers["ec"])
    configure(jwks_url=issuer.url)
    return issuer


def test_handler_with_jwks_allows_known_kids_and_refuses_unknown_ones(jwks_issuer, signers):
    # GIVEN the authorizer configured with a JWKS URL serving rsa-1 and ec-1
    # WHEN tokens naming a known kid, an unknown kid, and a hostile jku are presented
    allowed = [
        authorizer.handler(authorizer_event(query=mint(signers[kind])), FakeContext())
        for kind in ("rsa", "ec")
    ]
    unknown = mint(signers["rsa_other"])
    hostile_jku = mint(signers["rsa_other"], headers={"jku": "https://evil.example.test/jwks"})

    # THEN known kids are allowed, the others refused with 401
    assert allowed == [allow(), allow()]
    assert_unauthorized(authorizer_event(query=unknown))
    assert_unauthorized(authorizer_event(query=hostile_jku))
    # AND only the configured URL was ever fetched, at most once per refresh interval
    assert jwks_issuer.calls == [jwks_issuer.url]
    assert connection_count() == 0


def test_handler_with_jwks_flood_of_unknown_kids_does_not_hammer_the_issuer(jwks_issuer, signers):
    # GIVEN a warm JWKS cache
    authorizer.handler(authorizer_event(query=mint(signers["rsa"])), FakeContext())
    assert len(jwks_issuer.calls) == 1

    # WHEN 100 tokens with made-up kids arrive
    for n in range(100):
        assert_unauthorized(authorizer_event(query=mint(signers["ec"], headers={"kid": f"x{n}"})))

    # THEN all are refused and the issuer saw at most one more fetch
    assert len(jwks_issuer.calls) <= 2


def test_handler_with_jwks_refuses_a_kid_of_the_other_key_type(jwks_issuer, signers):
    # GIVEN the JWKS key rsa-1 (RSA)
    # WHEN an ES256 token names kid rsa-1
    token = mint(signers["ec_other"], headers={"kid": "rsa-1"})

    # THEN it is a 401, not an unhandled TypeError
    assert_unauthorized(authorizer_event(query=token))


# --- nothing secret in the logs -----------------------------------------------------------


class Recorder(logging.Handler):
    """Keeps every record as the runtime would print it, and all its raw attributes."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.formatter = JsonFormatter()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.formatter.format(record))
        self.lines.append(repr(record.__dict__))


@pytest.fixture
def recorded() -> Iterator[Recorder]:
    recorder = Recorder()
    logger = logging.getLogger("streamer")
    logger.addHandler(recorder)
    try:
        yield recorder
    finally:
        logger.removeHandler(recorder)


def test_no_token_or_key_material_is_ever_logged(
    configure, signers, issuer, recorded, caplog, capfd
):
    # GIVEN every log record captured: the streamer loggers, the root logger, stdout/stderr
    caplog.set_level(logging.DEBUG)
    tokens: list[str] = []

    def present(event: dict[str, Any]) -> None:
        tokens.extend(tokens_in(event))
        # A crash is another test's failure; here only the logs count.
        with contextlib.suppress(Exception):
            api_gateway_connect(event)

    # WHEN the whole matrix runs, for both key types: accepted, denied, refused, JWKS
    for kind in ("rsa", "ec"):
        keys = key_set(signers, kind)
        configure(keys.key)
        for transport in ("query", "header"):
            present(send(mint(keys.key), transport))
            present(send(mint(keys.key, library="joserfc"), transport))
            present(send(mint(keys.key, claims(tenant_id="tenant-3")), transport))
            for make in REFUSED.values():
                present(send(make(keys), transport))
        present(authorizer_event(query=mint(keys.key), header=mint(keys.key, claims(sub="b"))))
    configure(jwks_url=issuer.url)
    present(authorizer_event(query=mint(signers["rsa"])))
    present(authorizer_event(query=mint(signers["rsa_other"])))

    # THEN the logs say what happened ...
    out, err = capfd.readouterr()
    logged = "\n".join([*recorded.lines, caplog.text, out, err])
    assert '"message":"connection refused"' in logged
    assert '"reason":"tenant not allowed"' in logged
    # ... but contain no token, no signature or claims part, and no key material
    secrets = token_fragments(tokens)
    for signer in signers.values():
        for pem in (signer.public_pem, signer.private_pem.decode()):
            secrets.update(line for line in pem.splitlines() if not line.startswith("-----"))
    leaked = sorted(secret[:24] for secret in secrets if secret in logged)
    assert leaked == []
    assert "BEGIN PUBLIC KEY" not in logged and "BEGIN PRIVATE KEY" not in logged


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
