"""Fixtures shared by the unit tests: AWS mocked in-process with moto.

No network: moto's `mock_aws` intercepts botocore, the tables are made from
the same schema the Pulumi components use, and the management API is a fake
client that records what would have been posted.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import jwt

# moto's in-process mock intercepts a call only in botocore sessions made after its
# import (botocore copies the built-in handlers into a session when it makes it), and the
# runtime keeps one session for the process (`streamer.aws`). Imported first, so a session
# a test makes outside moto (a threads-mode function, the IAM tests) still lets later
# tests' `mock_aws` intercept; while no mock is on, the handler lets every call through.
import moto  # noqa: F401
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, RSAKey

from local.streams import lambda_record
from streamer import aws as streamer_aws
from streamer import config, runtime, schema
from streamer.entry import authorizer as authorizer_entry

EVENTS = Path(__file__).parent / "unit" / "events"
REGION = "us-east-1"
TABLES = {
    config.CONNECTIONS_TABLE: "test-connections",
    config.REQUESTS_TABLE: "test-requests",
    config.SUBSCRIPTIONS_TABLE: "test-subscriptions",
}


def load_event(name: str) -> dict[str, Any]:
    """A sample event as AWS documents it, from tests/unit/events."""
    return json.loads((EVENTS / f"{name}.json").read_text())


class FakeContext:
    """The parts of Lambda's context object the entry points use."""

    function_name = "streamer-test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:streamer-test"

    def __init__(self, remaining_ms: int = 30_000) -> None:
        self.aws_request_id = "req-ctx-1"
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


class FakeManagementApi:
    """Stands in for `apigatewaymanagementapi` clients: records posts per connection."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, dict[str, Any]]] = []
        self.gone: set[str] = set()
        self.throttle_next: int = 0

    def factory(self, endpoint: str) -> Any:
        api = self

        class Client:
            def post_to_connection(self, ConnectionId: str, Data: bytes) -> dict:
                if ConnectionId in api.gone:
                    raise ClientError(
                        {
                            "Error": {"Code": "GoneException", "Message": ""},
                            "ResponseMetadata": {"HTTPStatusCode": 410},
                        },
                        "PostToConnection",
                    )
                api.posts.append((endpoint, ConnectionId, json.loads(Data)))
                return {}

        return Client()

    def messages(self, connection_id: str | None = None) -> list[dict[str, Any]]:
        return [m for _, c, m in self.posts if connection_id in (None, c)]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        # botocore 1.44 routes DynamoDB to account-based hosts moto does not know.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        config.PROGRESS_FLUSH_MS: "50",
        config.PROGRESS_PERSIST_MS: "100",
        **TABLES,
    }
    for name in config.ALL:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def aws(aws_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Mocked DynamoDB with Streamer's three tables; a fresh runtime per test."""
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        for table in schema.TABLES:
            name = TABLES[f"STREAMER_{table.logical_name.upper()}_TABLE"]
            client.create_table(**schema.create_table_request(table, name))
        runtime.reset()
        authorizer_entry.reset()
        yield aws_env
        runtime.reset()
        authorizer_entry.reset()


@pytest.fixture
def test_app(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the test application (tests/unit/apps.py: the demo plus misbehaving handlers)."""
    monkeypatch.setenv(config.APP_MODULE, "tests.functional.apps")
    runtime.reset()


@pytest.fixture
def management(aws: dict[str, str]) -> FakeManagementApi:
    """The fake management API, wired into this test's runtime."""
    from streamer import store
    from streamer.delivery import Delivery

    api = FakeManagementApi()
    rt = runtime.current()
    rt.__dict__["delivery"] = Delivery(
        rt.settings.region, on_gone=store.forget_connection, client_factory=api.factory
    )
    return api


def stream_event(since: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The Lambda event for every record written to the requests table so far.

    Reads moto's stream with GetRecords and shapes the records as the Lambda
    event source mapping does, with the local stack's own builder
    (`local.streams.lambda_record`). `since` maps shard ids to the iterator
    position to continue from; the second value returned is the new position.
    """
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    arn = dynamodb.describe_table(TableName=TABLES[config.REQUESTS_TABLE])["Table"][
        "LatestStreamArn"
    ]
    streams = boto3.client("dynamodbstreams", region_name=REGION)
    position = dict(since or {})
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        shard_id = shard["ShardId"]
        if shard_id in position:
            iterator = streams.get_shard_iterator(
                StreamArn=arn,
                ShardId=shard_id,
                ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                SequenceNumber=position[shard_id],
            )["ShardIterator"]
        else:
            iterator = streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        for record in streams.get_records(ShardIterator=iterator)["Records"]:
            records.append(lambda_record(record, arn))
            position[shard_id] = record["dynamodb"]["SequenceNumber"]
    return {"Records": records}, position


# --- identities, keys and tokens: one definition for every layer ----------------------------

ISSUER = "https://issuer.example.test/"
AUDIENCE = "streamer-api"
ALLOWED_TENANTS = "tenant-1,tenant-2"
DROP = object()  # a claim value meaning "leave this claim out"


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


@pytest.fixture(scope="session")
def signers() -> dict[str, Signer]:
    """Two RSA and two EC key pairs, made once per session (RSA generation takes seconds)."""

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


@pytest.fixture
def configure(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
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
        authorizer_entry.reset()

    return apply


@pytest.fixture
def alice(test_app: None, management: FakeManagementApi) -> Any:
    """Tenant t1's alice, connected as `conn-alice`, the test application's records cleared."""
    from tests.functional import apps
    from tests.functional.helpers import Client

    for record in (apps.runs, apps.external_jobs, apps.polls, apps.external_outage):
        record.clear()
    client = Client("conn-alice", user="alice", tenant="t1")
    client.connect()
    return client


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


@pytest.fixture
def dynamodb_down(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """DynamoDB unreachable: its endpoint is a closed port, with a fresh runtime."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{closed_port()}")
    # A session of its own: the process's session, once made outside moto, would
    # lack the handler moto's later tests need (botocore copies its handlers at creation).
    monkeypatch.setattr(streamer_aws, "_session", None)
    runtime.reset()
    yield
    runtime.reset()
