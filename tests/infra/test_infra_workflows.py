"""The roles the GitHub workflows assume: their trust policies name exactly the `sub`
claims the workflows' jobs carry, and parliament finds nothing wrong in their policies.

GitHub sets `sub` from what a job runs for (docs.github.com, "OpenID Connect
reference", example subject claims): `repo:<owner>/<repo>:environment:<name>` for a job
in an environment, whatever the event; `repo:<owner>/<repo>:pull_request` for a
pull-request job without one; `repo:<owner>/<repo>:ref:<ref>` otherwise.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import parliament
import pytest
import yaml

from components.plan import ACCOUNT, PROJECT_ROOT

pytestmark = pytest.mark.infra

WORKFLOWS = PROJECT_ROOT / ".github" / "workflows"
IAM = PROJECT_ROOT / "docs" / "iam"
REPO = "OWNER/REPO"
#: The trust policy template of the role each secret names (docs/deploying.md).
TRUST_POLICIES = {
    "AWS_PREVIEW_ROLE_ARN": IAM / "github-preview-trust-policy.json",
    "AWS_DEPLOY_ROLE_ARN": IAM / "github-deploy-trust-policy.json",
}
_SECRET = re.compile(r"secrets\.(\w+)")
_STACK_INPUT = "${{ inputs.stack }}"


def workflow(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def role_secrets(job: dict) -> list[str]:
    """The secrets naming the roles a job's steps assume."""
    return [
        _SECRET.search(step["with"]["role-to-assume"])[1]
        for step in job.get("steps", [])
        if step.get("uses", "").startswith("aws-actions/configure-aws-credentials")
    ]


def claims_of(name: str, events: list[str], inputs: dict[str, str]) -> dict[str, set[str]]:
    """By role secret, the `sub` claims the jobs of workflow `name` assume it with."""
    claims: dict[str, set[str]] = {}
    for job in workflow(name)["jobs"].values():
        environment = job.get("environment")
        if environment == _STACK_INPUT:
            environment = inputs["stack"]
        for secret in role_secrets(job):
            for event in events:
                sub = (
                    f"repo:{REPO}:environment:{environment}"
                    if environment
                    else f"repo:{REPO}:pull_request"
                    if event == "pull_request"
                    else f"repo:{REPO}:ref:refs/heads/main"
                )
                claims.setdefault(secret, set()).add(sub)
    return claims


def workflow_claims() -> dict[str, set[str]]:
    """Every role the workflows assume, with every `sub` its jobs can carry."""
    claims = claims_of("pull-request.yml", list(workflow("pull-request.yml")["on"]), {})
    deploy = workflow("deploy.yml")
    assert list(deploy["on"]) == ["push"] and deploy["on"]["push"]["branches"] == ["main"]
    for job in deploy["jobs"].values():
        if job.get("uses") == "./.github/workflows/pulumi-up.yml":
            for secret, subs in claims_of("pulumi-up.yml", ["push"], job["with"]).items():
                claims.setdefault(secret, set()).update(subs)
    return claims


def trusted_subs(path: Path) -> set[str]:
    (statement,) = json.loads(path.read_text())["Statement"]
    condition = statement["Condition"]["StringEquals"]
    subs = condition["token.actions.githubusercontent.com:sub"]
    assert condition["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"]["Federated"].endswith(
        ":oidc-provider/token.actions.githubusercontent.com"
    )
    return {subs} if isinstance(subs, str) else set(subs)


def test_the_workflows_assume_the_preview_and_the_deploy_roles() -> None:
    # GIVEN the workflows  WHEN the roles their jobs assume are read
    claims = workflow_claims()

    # THEN pull requests preview without an environment, and main deploys each stack in
    # the environment of its name
    assert claims == {
        "AWS_PREVIEW_ROLE_ARN": {f"repo:{REPO}:pull_request"},
        "AWS_DEPLOY_ROLE_ARN": {
            f"repo:{REPO}:environment:{stack}" for stack in ("dev", "staging", "prod")
        },
    }


@pytest.mark.parametrize("secret", sorted(TRUST_POLICIES))
def test_each_trust_policy_names_exactly_the_claims_of_its_jobs(secret: str) -> None:
    # GIVEN a role's trust policy template and the claims of the jobs that assume it
    # WHEN they are compared  THEN they are the same: no job is refused, no other admitted
    assert trusted_subs(TRUST_POLICIES[secret]) == workflow_claims()[secret]


#: parliament findings that are these policies' purpose, not mistakes: a trust policy
#: has no Resource; parliament's list of identity providers predates GitHub's OIDC
#: provider; a deploy role manages the functions' roles.
EXPECTED_FINDINGS = {
    "github-preview-trust-policy.json": {"MALFORMED", "UNKNOWN_FEDERATION_SOURCE"},
    "github-deploy-trust-policy.json": {"MALFORMED", "UNKNOWN_FEDERATION_SOURCE"},
    "deploy-iam-policy.json": {"PERMISSIONS_MANAGEMENT_ACTIONS"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_FINDINGS))
def test_the_ci_policies_pass_the_lint(name: str) -> None:
    # GIVEN a policy template with the account filled in
    document = (IAM / name).read_text().replace("ACCOUNT_ID", ACCOUNT)

    # WHEN parliament lints it
    findings = parliament.analyze_policy_string(document, include_community_auditors=True)

    # THEN it finds only what the policy is for: no unknown action, no resource an action
    # cannot take, no "*" where a narrower resource exists
    assert {f.issue for f in findings.findings} <= EXPECTED_FINDINGS[name]
    if "MALFORMED" in EXPECTED_FINDINGS[name]:
        details = {f.detail for f in findings.findings if f.issue == "MALFORMED"}
        assert details <= {"Statement contains neither Resource nor NotResource"}
