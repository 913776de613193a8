"""Dev tokens: a key pair kept under `.local/`, and JWTs signed with it.

Without `--jwt-public-key` or `--jwks-url` the stack trusts this key, so
`python -m local token` and the ready file's `dev_token` work across restarts.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

STATE_DIR = Path(".local")
KEY_FILE = "dev-jwt-key.pem"
ALGORITHM = "ES256"
DEV_ISSUER = "streamer-local"
DEV_AUDIENCE = "streamer"
DEV_USER = "dev-user"
DEV_TENANT = "dev-tenant"
DEV_TOKEN_TTL_S = 12 * 3600


def dev_private_key(state_dir: Path = STATE_DIR) -> bytes:
    """The dev signing key (PEM), made on first use.

    Several stacks may start at once: the key is written to a temporary file
    and linked into place, so exactly one key wins and every process uses it.
    """
    path = state_dir / KEY_FILE
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        handle, temporary = tempfile.mkstemp(dir=state_dir, prefix=".key-")
        try:
            os.write(handle, pem)
            os.close(handle)
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    return path.read_bytes()


def public_key_pem(private_pem: bytes) -> str:
    """The public half of a PEM private key, as PEM text (what the authorizer is given)."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def mint(
    private_pem: bytes,
    sub: str,
    tenant: str,
    ttl_s: int = DEV_TOKEN_TTL_S,
    permissions: list[str] | None = None,
    issuer: str = DEV_ISSUER,
    audience: str = DEV_AUDIENCE,
) -> str:
    """A token for `sub` in `tenant`, valid for `ttl_s` seconds (negative: already expired)."""
    now = int(time.time())
    claims: dict = {
        "sub": sub,
        "tenant_id": tenant,
        "iss": issuer,
        "aud": audience,
        "iat": min(now, now + ttl_s),
        "exp": now + ttl_s,
    }
    if permissions is not None:
        claims["permissions"] = permissions
    return jwt.encode(claims, private_pem, algorithm=ALGORITHM)
