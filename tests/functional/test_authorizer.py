"""The `$connect` REQUEST authorizer, attacked with the token matrix of docs/protocol.md section 1.

Every case goes through the entry point `streamer.entry.authorizer.handler`
configured only through environment variables, exactly as Lambda runs it.
Valid tokens are minted by two libraries (PyJWT and joserfc) so the
authorizer is not only compatible with itself. Nothing leaves the machine:
JWKS documents come from an issuer served on loopback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import boto3
import jwt
import pytest

from streamer import auth, config
from streamer.auth import InvalidToken, JwksKeys, TokenVerifier
from streamer.config import Settings
from streamer.entry import authorizer, connect
from streamer.logs import JsonFormatter
from tests.conftest import (
    AUDIENCE,
    ISSUER,
    REGION,
    TABLES,
    FakeContext,
    Signer,
    claims,
    key_set,
    load_event,
    mint,
)
from tests.unit.test_authorizer import (
    REFUSED,
    allow,
    assert_unauthorized,
    authorizer_event,
    send,
    token_fragments,
    tokens_in,
)

JWKS_PATH = "/.well-known/jwks.json"


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


def test_a_refused_handshake_never_creates_a_connection_record(aws, configure, signers):
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


def test_handler_with_jwks_allows_known_kids_and_refuses_unknown_ones(aws, jwks_issuer, signers):
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
    aws, configure, signers, issuer, recorded, caplog, capfd
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
