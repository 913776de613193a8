"""Both APIs accept exactly the same tokens: the token matrix fed to each.

The WebSocket `$connect` and the HTTP API's routes run the same authorizer function;
here every token of `test_authorizer`'s matrix (both key types, both JWT libraries,
every refusal, a tenant not allowed, a watch token) goes through API Gateway's two
readings of its answer: a handshake's (401 raise, Deny 403, Allow) and the HTTP API's
(the v2 event built by `local.http_api`, its simple response read the same way).
"""

from __future__ import annotations

from typing import Any

import pytest

from local import http_api
from local.management import HttpResponse
from streamer import config, runtime, watch
from streamer.entry import authorizer
from streamer.events import Identity
from tests.conftest import REGION, FakeContext, claims, key_set, mint
from tests.unit.test_authorizer import REFUSED, send

WATCH_SECRET = "watch-secret-for-tests-0123456789abcdef"


def websocket(token: str) -> tuple[int, dict[str, Any] | None]:
    """The handshake's status and the context `$connect` would get."""
    try:
        answer = authorizer.handler(send(token, "header"), FakeContext())
    except Exception as error:
        return (401 if str(error) == "Unauthorized" else 500), None
    effect = answer["policyDocument"]["Statement"][0]["Effect"]
    return (200, answer["context"]) if effect == "Allow" else (403, None)


def http(token: str) -> tuple[int, dict[str, Any] | None]:
    """The HTTP API's status before the function, and the context the function would get."""
    headers = {"authorization": f"Bearer {token}", "host": "h"}
    event = http_api.http_event(
        "POST", "/requests", headers, b"{}", "POST /requests", {}, account_id="1"
    )
    request = http_api.authorizer_event(event, region=REGION, account_id="1")
    decided = http_api.authorization(authorizer.handler(request, FakeContext()))
    if isinstance(decided, HttpResponse):
        return decided.status, None
    return 200, decided


def matrix(signers_: dict, kind: str) -> dict[str, str]:
    keys = key_set(signers_, kind)
    tokens = {f"refused: {case}": make(keys) for case, make in REFUSED.items()}
    tokens["valid (pyjwt)"] = mint(keys.key)
    tokens["valid (joserfc)"] = mint(keys.key, library="joserfc")
    tokens["tenant not allowed"] = mint(keys.key, claims(tenant_id="tenant-3"))
    tokens["watch token"] = watch.mint(
        WATCH_SECRET, Identity("user-a", "tenant-1"), "user-a", "r-1", 300
    )[0]
    tokens["watch token, other secret"] = watch.mint(
        "another-secret-0123456789abcdef012345",
        Identity("user-a", "tenant-1"),
        "user-a",
        "r-1",
        300,
    )[0]
    return tokens


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_both_apis_accept_exactly_the_same_tokens(configure, signers, monkeypatch, kind):
    # GIVEN the authorizer configured with an RS256 or ES256 key and a watch-token secret
    keys = key_set(signers, kind)
    configure(keys.key)
    monkeypatch.setenv(config.WATCH_TOKEN_SECRET, WATCH_SECRET)
    runtime.reset()
    authorizer.reset()

    # WHEN every token of the matrix is presented to both APIs
    results = {name: (websocket(t), http(t)) for name, t in matrix(signers, kind).items()}

    # THEN each is accepted by both or by neither, with the same identity when accepted
    for name, ((ws_status, ws_context), (http_status, http_context)) in results.items():
        assert (ws_status == 200) == (http_status == 200), name
        assert ws_context == http_context, name
    accepted = sorted(name for name, ((status, _), _) in results.items() if status == 200)
    assert accepted == ["valid (joserfc)", "valid (pyjwt)", "watch token"]
    # AND refusals are API Gateway's answers: 401 (WebSocket) / 403 (HTTP) for a bad
    # token, 403 on both for a tenant that is not allowed; never a 500
    for name, ((ws_status, _), (http_status, _)) in results.items():
        if name == "tenant not allowed":
            assert (ws_status, http_status) == (403, 403)
        elif name not in accepted:
            assert (ws_status, http_status) == (401, 403), name
