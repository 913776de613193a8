"""AWS's managed Powertools layer: every function gets its region's, at the version the
tests run, looked up in SSM or given by `streamer:powertoolsLayerArn`."""

from __future__ import annotations

from pathlib import Path

import aws_lambda_powertools
import pytest
from packaging.requirements import Requirement

from components import plan, powertools
from components.plan import PlanMocks, managed_powertools_arn
from components.regional import MAX_LAYERS
from components.settings import ConfigError

from .conftest import run_stack
from .test_infra_user_app import app_artifacts  # noqa: F401 (a fixture)

pytestmark = pytest.mark.infra

FUNCTION = "aws:lambda/function:Function"
DISTRIBUTION = "aws-lambda-powertools"
LAYER = "017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-arm64"


def pinned(requirements: Path) -> list[Requirement]:
    lines = [line.split("#")[0].strip() for line in requirements.read_text().splitlines()]
    found = [Requirement(line) for line in lines if line and not line.startswith("-")]
    return [r for r in found if r.name == DISTRIBUTION]


def test_the_dev_pin_admits_exactly_the_layers_version() -> None:
    # GIVEN the dev requirements' Powertools pin
    (requirement,) = pinned(plan.PROJECT_ROOT / "requirements.txt")

    # WHEN its specifier is read  THEN it is the one version the managed layer ships
    assert [(s.operator, s.version) for s in requirement.specifier] == [("==", powertools.VERSION)]


def test_the_tests_run_the_layers_version() -> None:
    # GIVEN the installed library  THEN it is the version every function gets on Lambda
    assert aws_lambda_powertools.__version__ == powertools.VERSION


def test_the_dependency_layer_does_not_ship_powertools() -> None:
    # GIVEN the dependency layer's requirements  THEN Powertools is not among them
    assert pinned(plan.PROJECT_ROOT / "lambdas" / "requirements.txt") == []


def test_every_function_gets_its_regions_layer_looked_up_at_the_pinned_version(
    artifacts_dir: Path,
) -> None:
    # GIVEN prod (two regions) planned on mocks that answer SSM as AWS does
    mocks = PlanMocks()
    planned = run_stack("prod", artifacts_dir, plan_mocks=mocks)

    # WHEN the parameters read and the functions' layers are looked at
    functions = planned.of_type(FUNCTION)
    regions = {fn.region for fn in functions}

    # THEN each region read the pinned version's parameter for arm64 / Python 3.12 through
    # its own provider, and each of its functions has the layer that parameter names
    expected = f"/aws/service/powertools/python/arm64/python3.12/{powertools.VERSION}"
    assert regions == {"us-east-1", "eu-west-1"}
    assert sorted(set(mocks.parameters_read)) == sorted((r, expected) for r in regions)
    for fn in functions:
        assert fn.inputs["layers"][0] == managed_powertools_arn(fn.region)


def test_a_configured_arn_with_region_replaces_the_lookup(artifacts_dir: Path) -> None:
    # GIVEN one ARN for every region, as for a release whose parameter is missing
    given = f"arn:aws:lambda:{{region}}:{LAYER}:26"
    mocks = PlanMocks()
    planned = run_stack(
        "prod", artifacts_dir, overrides={"powertoolsLayerArn": given}, plan_mocks=mocks
    )

    # THEN nothing is looked up and every function has its region's given layer
    assert mocks.parameters_read == []
    for fn in planned.of_type(FUNCTION):
        assert fn.inputs["layers"][0] == given.format(region=fn.region)


def test_a_configured_map_replaces_the_lookup_for_its_regions_only(artifacts_dir: Path) -> None:
    # GIVEN an ARN for eu-west-1 only
    given = f"arn:aws:lambda:eu-west-1:{LAYER}:9"
    mocks = PlanMocks()
    planned = run_stack(
        "prod",
        artifacts_dir,
        overrides={"powertoolsLayerArn": {"eu-west-1": given}},
        plan_mocks=mocks,
    )

    # THEN eu-west-1's functions have it and us-east-1 looked its layer up
    assert {region for region, _ in mocks.parameters_read} == {"us-east-1"}
    for fn in planned.of_type(FUNCTION):
        expected = given if fn.region == "eu-west-1" else managed_powertools_arn("us-east-1")
        assert fn.inputs["layers"][0] == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("arn:aws:lambda:us-west-2:017000801446:layer:Powertools:3", "not in us-east-1"),
        ("arn:aws:lambda:{region}:017000801446:layer:Powertools", "not a layer version ARN"),
        ({"ap-south-1": "arn:aws:lambda:ap-south-1:1:layer:P:1"}, "not configured regions"),
    ],
)
def test_a_layer_lambda_would_refuse_is_refused(
    artifacts_dir: Path, value: object, problem: str
) -> None:
    # GIVEN a layer in another region, an unversioned ARN, or a region the stack lacks
    # WHEN the stack is planned  THEN the key is named with what is wrong
    with pytest.raises(ConfigError, match=problem):
        run_stack("dev", artifacts_dir, overrides={"powertoolsLayerArn": value})


def test_with_an_app_and_tracing_a_function_stays_within_lambdas_layer_limit(
    app_artifacts: Path,  # noqa: F811
) -> None:
    # GIVEN a traced stack with an app that brings requirements (every layer we make)
    planned = run_stack("dev", app_artifacts, overrides={"runtime": {"appModule": "my_reports"}})

    # THEN each function has the four layers within Lambda's five, ours after the managed
    # one, so where both hold a package, our pinned build is the one on the import path
    for fn in planned.of_type(FUNCTION):
        layers = fn.inputs["layers"]
        assert len(layers) == 4 <= MAX_LAYERS
        assert [arn.rsplit(":", 2)[-2] for arn in layers] == [
            "AWSLambdaPowertoolsPythonV3-python312-arm64",
            "streamer-dev-dependencies",
            "streamer-dev-app",
            "streamer-dev-tracing",
        ]
