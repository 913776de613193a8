"""The local stack plays the API the Pulumi program declares, not one of its own."""

from __future__ import annotations

import pytest

from components.plan import Plan
from local.apigateway import Api

from .graph import PROJECT

pytestmark = pytest.mark.infra


def test_local_gateway_checks_the_identity_sources_the_authorizer_is_given(dev: Plan) -> None:
    # GIVEN the WebSocket API's authorizer as the program creates it
    (authorizer,) = [
        r
        for r in dev.descendants(f"{PROJECT}-us-east-1-websocket")
        if r.type == "aws:apigatewayv2/authorizer:Authorizer"
    ]

    # WHEN its identity sources are compared with those the local gateway checks
    # THEN they are the same, so a handshake refused there is refused here
    assert tuple(authorizer.inputs["identitySources"]) == Api(region="x").identity_sources
