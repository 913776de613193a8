"""Every policy the program generates, linted by parliament: a linter carrying AWS's own
list of actions, resource types and ARN formats (its iam_definition.json).

Unknown actions, resources whose ARN format an action does not take, and `*` where an
action has resource-level permissions all fail. Two documented exceptions, each narrow:

- a role's trust policy has no `Resource` by definition (IAM applies it to the role);
  parliament lints every document as an identity policy, so that finding alone is
  allowed, and only on statements that name a `Principal`;
- parliament splits ARNs on every colon, so a DynamoDB stream ARN, whose label is a
  timestamp with colons (`.../stream/2024-01-01T00:00:00.000`), fails its own format;
  the label's colons are replaced before linting (the same ARN with dashes passes).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import parliament
import pytest

from components.plan import Plan

from .conftest import run_stack

pytestmark = pytest.mark.infra

_STREAM_LABEL = re.compile(r"(:table/[^/\"]+/stream/)([0-9T:.\-]+)")
_NO_RESOURCE = "Statement contains neither Resource nor NotResource"


def lint(document: str) -> list[tuple[str, object]]:
    """parliament's findings for one policy document, as (issue, detail)."""
    document = _STREAM_LABEL.sub(lambda m: m[1] + m[2].replace(":", "-"), document)
    policy = parliament.analyze_policy_string(document, include_community_auditors=True)
    statements = json.loads(document)["Statement"]
    trust = all("Principal" in s and "Resource" not in s for s in statements)
    return [
        (finding.issue, finding.detail)
        for finding in policy.findings
        if not (trust and finding.issue == "MALFORMED" and finding.detail == _NO_RESOURCE)
    ]


def generated_policies(plan: Plan) -> dict[str, str]:
    """Every policy document among the plan's inputs, by resource and input name."""
    documents = {}
    for resource in plan.resources:
        for key in ("policy", "assumeRolePolicy"):
            value = resource.inputs.get(key)
            if isinstance(value, str) and value.lstrip().startswith("{"):
                documents[f"{resource.name}.{key}"] = value
    return documents


@pytest.mark.parametrize(
    ("document", "issue"),
    [
        # An action AWS does not have.
        ({"Action": "dynamodb:GetItems", "Resource": "*"}, "UNKNOWN_ACTION"),
        # A queue's ARN for a table action.
        (
            {
                "Action": "dynamodb:GetItem",
                "Resource": "arn:aws:sqs:us-east-1:123456789012:queue",
            },
            "RESOURCE_MISMATCH",
        ),
        # "*" for an action that takes a table ARN.
        ({"Action": "dynamodb:GetItem", "Resource": "*"}, "RESOURCE_STAR"),
        # A stream listing on one stream: ListStreams takes only "*".
        (
            {
                "Action": "dynamodb:ListStreams",
                "Resource": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
            },
            "RESOURCE_MISMATCH",
        ),
    ],
)
def test_the_lint_catches_what_iam_would_not_grant(document: dict, issue: str) -> None:
    # GIVEN a policy with one mistake  WHEN it is linted  THEN the finding names it
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **document}]})
    assert issue in {found for found, _ in lint(policy)}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_generated_policy_passes_the_lint(request: pytest.FixtureRequest, stack: str) -> None:
    # GIVEN every role policy, trust policy and resource policy the stack creates
    plan: Plan = request.getfixturevalue(stack)
    documents = generated_policies(plan)
    assert any(name.endswith("-policy.policy") for name in documents)
    assert any(name.endswith(".assumeRolePolicy") for name in documents)

    # WHEN each is linted
    findings = {name: lint(document) for name, document in documents.items()}

    # THEN none has a finding
    assert {name: found for name, found in findings.items() if found} == {}


def test_the_policies_of_a_stack_without_lifecycle_events_pass_too(artifacts_dir: Path) -> None:
    # GIVEN dev without lifecycle events and without API Gateway logging (other statements)
    plan = run_stack(
        "dev", artifacts_dir, overrides={"lifecycleEvents": False, "apiGatewayLogging": False}
    )

    # WHEN its policies are linted  THEN none has a finding
    findings = {name: lint(document) for name, document in generated_policies(plan).items()}
    assert {name: found for name, found in findings.items() if found} == {}
