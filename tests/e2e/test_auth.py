"""The `$connect` handshake: refused with 401 without a good token, any standard JWT accepted."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, RSAKey
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from local import tokens
from tests.e2e.conftest import LocalStack, start_stack
from tests.e2e.wire import ask, open_socket, run, unique

pytestmark = pytest.mark.e2e

ISSUER = "https://issuer.e2e.example"
AUDIENCE = "streamer-e2e"


async def handshake_status(url: str) -> int:
    """The HTTP status of the WebSocket handshake: 101 when it opened."""
    try:
        async with open_socket(url):
            return 101
    except InvalidStatus as refusal:
        return refusal.response.status_code


def _foreign_signature(stack: LocalStack, sub: str) -> str:
    """Right claims, signed by a key the stack does not trust."""
    stranger = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return tokens.mint(
        stranger,
        sub,
        "tenant-e2e",
        issuer=stack.ready["jwt_issuer"],
        audience=stack.ready["jwt_audience"],
    )


def _dev_key_token(stack: LocalStack, sub: str, **claims: str) -> str:
    """Signed with the stack's own key, with `issuer` or `audience` overridden."""
    key = Path(stack.ready["dev_key_file"]).read_bytes()
    return tokens.mint(key, sub, "tenant-e2e", **claims)


@pytest.mark.parametrize(
    "kind",
    ["missing", "expired", "wrongly signed", "garbage", "other audience", "other issuer"],
)
def test_handshake_without_a_good_token_is_refused_with_401(
    local_stack: LocalStack, kind: str
) -> None:
    # GIVEN a user with a bad token
    user = unique("refused")
    token = {
        "missing": None,
        "expired": local_stack.token(user, "tenant-e2e", ttl=-3600),
        "wrongly signed": _foreign_signature(local_stack, user),
        "garbage": "not-a-jwt",
        "other audience": _dev_key_token(local_stack, user, audience="someone-else"),
        "other issuer": _dev_key_token(local_stack, user, issuer="https://other.example"),
    }[kind]
    # WHEN it connects
    status = run(handshake_status(local_stack.url(token)))
    # THEN the handshake is refused with 401 and no connection is stored
    assert status == 401
    assert local_stack.items_of_user("connections", user) == []


def test_token_only_in_a_bearer_header_is_refused_with_401(local_stack: LocalStack) -> None:
    # GIVEN a valid token, sent as a Bearer header instead of the `token` query parameter
    user = unique("header")
    token = local_stack.token(user, "tenant-e2e")

    async def scenario() -> int:
        try:
            async with connect(
                local_stack.websocket_url,
                compression=None,
                additional_headers={"Authorization": f"Bearer {token}"},
            ):
                return 101
        except InvalidStatus as refusal:
            return refusal.response.status_code

    # WHEN it connects  THEN, as on AWS (the authorizer's only identity source is the
    # query parameter), the handshake is refused with 401 and no connection is stored
    assert run(scenario()) == 401
    assert local_stack.items_of_user("connections", user) == []


@pytest.fixture(scope="module")
def foreign_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[ECKey, RSAKey, Path, Path]:
    """Keys made by another JWT library (joserfc), their public halves as PEM files."""
    directory = tmp_path_factory.mktemp("foreign-keys")
    ec_key = ECKey.generate_key("P-256")
    rsa_key = RSAKey.generate_key(2048)
    ec_file, rsa_file = directory / "ec.pem", directory / "rsa.pem"
    ec_file.write_bytes(ec_key.as_pem(private=False))
    rsa_file.write_bytes(rsa_key.as_pem(private=False))
    return ec_key, rsa_key, ec_file, rsa_file


def stack_trusting(directory: Path, public_key_file: Path):
    """A stack that trusts only `public_key_file`, with this module's issuer and audience."""
    return start_stack(
        directory,
        "--jwt-public-key",
        str(public_key_file),
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
    )


@pytest.fixture(scope="module")
def ec_key_stack(
    tmp_path_factory: pytest.TempPathFactory, foreign_keys: tuple
) -> Iterator[LocalStack]:
    """A stack that trusts only an ES256 key minted outside the project."""
    with stack_trusting(tmp_path_factory.mktemp("ec-key-stack"), foreign_keys[2]) as stack:
        yield stack


def _jose_token(key, algorithm: str, **overrides: object) -> str:
    now = int(time.time())
    claims = {
        "sub": "jose-user",
        "tenant_id": "jose-tenant",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "permissions": ["reports:read"],
        **overrides,
    }
    return jose_jwt.encode({"alg": algorithm, "typ": "JWT"}, claims, key)


def test_token_from_another_jwt_library_is_accepted(
    ec_key_stack: LocalStack, foreign_keys: tuple
) -> None:
    ec_key = foreign_keys[0]
    # GIVEN a stack started with --jwt-public-key: it has no dev key of its own
    assert "dev_token" not in ec_key_stack.ready

    async def scenario() -> dict:
        # WHEN a client connects with a token joserfc signed
        async with open_socket(ec_key_stack.url(_jose_token(ec_key, "ES256"))) as socket:
            return await ask(socket, {"action": "echo", "payload": {"from": "joserfc"}})

    # THEN it is served
    answer = run(scenario())
    assert answer["data"] == {"echo": {"from": "joserfc"}}


@pytest.mark.parametrize(
    "overrides",
    [{"aud": "someone-else"}, {"iss": "https://other.example"}, {"exp": int(time.time()) - 3600}],
    ids=["audience", "issuer", "expired"],
)
def test_foreign_token_with_wrong_claims_is_refused(
    ec_key_stack: LocalStack, foreign_keys: tuple, overrides: dict
) -> None:
    token = _jose_token(foreign_keys[0], "ES256", **overrides)
    assert run(handshake_status(ec_key_stack.url(token))) == 401


def test_token_for_another_key_type_is_refused_with_401(
    ec_key_stack: LocalStack, foreign_keys: tuple
) -> None:
    rsa_key = foreign_keys[1]
    assert run(handshake_status(ec_key_stack.url(_jose_token(rsa_key, "RS256")))) == 401


def test_rs256_key_from_another_library_is_accepted(
    tmp_path_factory: pytest.TempPathFactory, foreign_keys: tuple
) -> None:
    _, rsa_key, _, rsa_file = foreign_keys
    with stack_trusting(tmp_path_factory.mktemp("rsa-key-stack"), rsa_file) as stack:
        assert run(handshake_status(stack.url(_jose_token(rsa_key, "RS256")))) == 101


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, ECKey]]:
    """An identity provider's JWKS endpoint serving one ES256 key made by joserfc."""
    key = ECKey.generate_key("P-256", auto_kid=True)
    document = json.dumps({"keys": [key.as_dict(private=False)]}).encode()

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", key
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_jwks_url_keys_are_trusted(tmp_path_factory: pytest.TempPathFactory, jwks_server) -> None:
    url, key = jwks_server
    impostor = ECKey.generate_key("P-256")

    def token(signing_key: ECKey) -> str:
        claims = {"sub": "jwks-user", "tenant_id": "jwks-tenant", "exp": int(time.time()) + 600}
        return jose_jwt.encode({"alg": "ES256", "kid": key.kid}, claims, signing_key)

    with start_stack(tmp_path_factory.mktemp("jwks-stack"), "--jwks-url", url) as stack:
        assert "dev_token" not in stack.ready
        assert run(handshake_status(stack.url(token(key)))) == 101
        assert run(handshake_status(stack.url(token(impostor)))) == 401
