"""An optional custom domain for the WebSocket API: absent unless configured, right when it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.plan import Plan
from components.settings import ConfigError

from .conftest import run_stack
from .graph import PROJECT

pytestmark = pytest.mark.infra

DOMAIN = "ws.example.com"
CERTIFICATES = {
    "us-east-1": "arn:aws:acm:us-east-1:123456789012:certificate/1111-east",
    "eu-west-1": "arn:aws:acm:eu-west-1:123456789012:certificate/2222-west",
}
DOMAIN_TYPES = ("aws:apigatewayv2/domainName:DomainName", "aws:apigatewayv2/apiMapping:ApiMapping")


@pytest.fixture(scope="module")
def prod_with_domain(artifacts_dir: Path) -> Plan:
    return run_stack(
        "prod",
        artifacts_dir,
        overrides={"domainName": DOMAIN, "certificateArn": list(CERTIFICATES.values())},
    )


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_custom_domain_unless_configured(request: pytest.FixtureRequest, stack: str) -> None:
    plan: Plan = request.getfixturevalue(stack)
    assert [r for r in plan.resources if r.type in DOMAIN_TYPES] == []
    assert "customDomainUrls" not in plan.outputs


@pytest.mark.parametrize("region", sorted(CERTIFICATES))
def test_a_configured_domain_maps_to_each_regions_stage(
    prod_with_domain: Plan, region: str
) -> None:
    # GIVEN prod with domainName and one certificate per region
    plan = prod_with_domain
    websocket = f"{PROJECT}-{region}-websocket"
    (domain,) = [r for r in plan.descendants(websocket) if r.type == DOMAIN_TYPES[0]]
    (mapping,) = [r for r in plan.descendants(websocket) if r.type == DOMAIN_TYPES[1]]
    api = plan.named(f"{websocket}-api")
    stage = plan.named(f"{websocket}-stage")

    # THEN the region's domain is regional, TLS 1.2, with that region's certificate
    assert domain.region == region
    assert domain.inputs["domainName"] == DOMAIN
    assert domain.inputs["domainNameConfiguration"] == {
        "certificateArn": CERTIFICATES[region],
        "endpointType": "REGIONAL",
        "securityPolicy": "TLS_1_2",
    }
    # AND it maps its root to this region's API and stage
    assert mapping.inputs["apiId"] == api.id
    assert mapping.inputs["domainName"] == domain.id
    assert mapping.inputs["stage"] == stage.inputs["name"]
    assert "apiMappingKey" not in mapping.inputs
    # AND the stack outputs the wss URL and the host the DNS record points at
    assert plan.outputs["customDomainUrls"][region] == f"wss://{DOMAIN}"
    target = plan.outputs["customDomainTargets"][region]
    assert target == domain.outputs["domainNameConfiguration"]["targetDomainName"]
    assert target.endswith(f".execute-api.{region}.amazonaws.com")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"domainName": DOMAIN}, "set both or neither"),
        ({"certificateArn": CERTIFICATES["us-east-1"]}, "set both or neither"),
        (
            {"domainName": DOMAIN, "certificateArn": CERTIFICATES["us-east-1"]},
            "one certificate in each of",
        ),
        ({"domainName": DOMAIN, "certificateArn": "not-an-arn"}, "not an ACM certificate ARN"),
    ],
)
def test_a_domain_without_a_certificate_in_every_region_is_refused(
    artifacts_dir: Path, overrides: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        run_stack("prod", artifacts_dir, overrides=overrides)
