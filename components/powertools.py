"""AWS's managed Powertools for AWS Lambda layer, which every function gets.

It is there for application handlers (Logger, Tracer, idempotency): Streamer itself does not
import it (`streamer.metrics` writes EMF in Powertools' layout, and the tests hold the two
equal). Powertools is not in the dependency layer (it would take that layer over its size
target, docs/operations.md "Metrics"): each function gets the layer AWS publishes in every
commercial region, at the version the dev requirements pin (`requirements.txt`), so the
tests and Lambda run the same library. tests/infra/test_infra_powertools.py checks the pin
and the installed version against `VERSION`.

Its ARN per region is a public SSM parameter,
`/aws/service/powertools/python/{arch}/{python}/{version}`, value
`arn:aws:lambda:{region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-arm64:N`
(Powertools' installation page, docs.aws.amazon.com/powertools/python/latest/#lambda-layer,
and aws-powertools/powertools-lambda-python .github/workflows/update_ssm.yml). A release's
parameter has been missing before (aws-powertools/powertools-lambda-python#7689), so
`streamer:powertoolsLayerArn` can name the layer instead
(`components.settings.powertools_layer_arns`).

Attaching the layer needs no grant from the stack: adding a layer version to a function
takes `lambda:GetLayerVersion` on it, which a layer in another account gives through its
resource-based policy (docs.aws.amazon.com/lambda/latest/dg/adding-layers.html), and
Powertools publishes its layers to every account; the functions' roles never read
layers (Lambda extracts them into /opt before the function's code runs,
docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html).
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from components.functions import ARCHITECTURE, RUNTIME

#: The Powertools release every function runs: the managed layer's and the dev pin's.
VERSION = "3.37.0"
#: The account AWS publishes the Powertools layers from.
PUBLISHER_ACCOUNT = "017000801446"


def parameter_name(version: str = VERSION) -> str:
    """The public SSM parameter holding the layer's ARN for the functions' runtime."""
    return f"/aws/service/powertools/python/{ARCHITECTURE}/{RUNTIME}/{version}"


def layer_arn(
    region: str, configured: Mapping[str, str], parent: pulumi.Resource
) -> pulumi.Input[str]:
    """The region's Powertools layer: the configured ARN, else the SSM parameter read
    through `parent`'s provider (the region's, so the value names the region's layer)."""
    if region in configured:
        return configured[region]
    parameter = aws.ssm.get_parameter_output(
        name=parameter_name(), opts=pulumi.InvokeOutputOptions(parent=parent)
    )
    return parameter.value
