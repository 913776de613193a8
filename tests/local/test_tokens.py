"""Dev tokens: one key per state folder, however many stacks start at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest

from local import tokens


def test_concurrent_first_use_makes_one_key(tmp_path) -> None:
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: tokens.dev_private_key(tmp_path), range(16)))
    assert len(keys) == 1
    assert [p.name for p in tmp_path.iterdir()] == [tokens.KEY_FILE]


def test_minted_token_verifies_with_the_public_half(tmp_path) -> None:
    key = tokens.dev_private_key(tmp_path)
    token = tokens.mint(key, "alice", "acme", ttl_s=60, permissions=["reports:write"])
    claims = jwt.decode(
        token,
        tokens.public_key_pem(key),
        algorithms=["ES256"],
        audience=tokens.DEV_AUDIENCE,
        issuer=tokens.DEV_ISSUER,
    )
    assert (claims["sub"], claims["tenant_id"], claims["permissions"]) == (
        "alice",
        "acme",
        ["reports:write"],
    )


def test_negative_ttl_mints_an_expired_token(tmp_path) -> None:
    key = tokens.dev_private_key(tmp_path)
    token = tokens.mint(key, "alice", "acme", ttl_s=-60)
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(token, tokens.public_key_pem(key), algorithms=["ES256"], audience="streamer")
