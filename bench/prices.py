"""Published AWS list prices (US East, N. Virginia) used to project a cost per request.

This machine has no internet; the figures were read on 2026-11-22 from the
pages named below. AWS's own pricing pages render their rate tables in the
browser, so the stored copies of aws.amazon.com hold no numbers; every rate
here comes from a page quoting AWS's list price, and is marked as such.
Check them against https://aws.amazon.com/pricing before relying on them.
"""

from __future__ import annotations

from dataclasses import dataclass

TAKEN_ON = "2026-11-22"


@dataclass(frozen=True)
class Price:
    name: str
    #: US dollars per one `per`.
    usd: float
    per: str
    #: The price as the source states it.
    quoted: str
    source: str


DYNAMODB_WRITE = Price(
    "DynamoDB on-demand write request unit",
    0.625e-6,
    "WRU",
    "$0.625 per million WRU",
    'airbyte.com, "Amazon DynamoDB Pricing: On-Demand & Provisioned Plans" (2025-07-21), '
    "US East, after AWS's November 2024 reduction",
)
DYNAMODB_READ = Price(
    "DynamoDB on-demand read request unit",
    0.125e-6,
    "RRU",
    "$0.125 per million RRU",
    "same page",
)
LAMBDA_REQUEST = Price(
    "Lambda request",
    0.20e-6,
    "invocation",
    "$0.20 per million requests",
    'cloudchipr.com, "AWS Lambda Pricing Breakdown", and git.mcrn.ar lambda_local_runner '
    "docs/lambdas-md/lambda-13-cost.md (x86 and arm64 alike)",
)
LAMBDA_ARM_GB_SECOND = Price(
    "Lambda duration, arm64 (first 7.5 billion GB-s a month)",
    0.0000133334,
    "GB-s",
    "$0.0000133334 per GB-s",
    "same pages, and artillery's lib/platform/aws-lambda/prices.js (citing "
    "aws.amazon.com/lambda/pricing)",
)
WEBSOCKET_MESSAGE = Price(
    "API Gateway WebSocket message (first 1 billion a month, metered per 32 KB)",
    1.00e-6,
    "message",
    "$1.00 per million messages",
    'awsforengineers.com, "AWS API Gateway Pricing Explained" (2025-05-19); the 32 KB '
    "metering is stated on aws.amazon.com/api-gateway/pricing/",
)
WEBSOCKET_CONNECTION_MINUTE = Price(
    "API Gateway WebSocket connection minute",
    0.25e-6,
    "connection-minute",
    "$0.25 per million connection minutes",
    're:Post question "how to interpret websocket api connection minutes pricing" '
    "(repost.aws), quoting aws.amazon.com/api-gateway/pricing/",
)

SQS_REQUEST = Price(
    "SQS standard queue request (first 100 billion a month; each 64 KB of a payload is a request)",
    0.40e-6,
    "request",
    "$0.40 per million requests",
    'cloudburn.io, "Amazon SQS Pricing: Complete Guide + Calculator (2026)" (2026-03-14), US '
    'East; factualminds.com, "Amazon SQS Pricing: The 64 KB Rule, FIFO Premium..." (2026-06-13)',
)
STEP_FUNCTIONS_EXPRESS_REQUEST = Price(
    "Step Functions Express workflow request (an execution started)",
    1.00e-6,
    "execution",
    "$1.00 per million requests",
    "aws.amazon.com/step-functions/pricing/ (its pricing example, as copied by "
    'mdsite.deno.dev); AWS Compute Blog, "Building cost-effective AWS Step Functions '
    'workflows" ("$1.00 per million invocations")',
)
STEP_FUNCTIONS_EXPRESS_GB_SECOND = Price(
    "Step Functions Express duration (first 1,000 GB-hours a month; each execution rounded "
    "up to 100 ms, its memory to 64 MB chunks, 64 MB at least)",
    0.06 / 3600,
    "GB-s",
    "$0.06 per GB-hour",
    "aws.amazon.com/step-functions/pricing/ (its pricing example 3, as copied by "
    "mdsite.deno.dev: 50 MB + definition + data, billed in 64 MB chunks; duration "
    "rounded up to the nearest 100 ms)",
)

ALL = (
    DYNAMODB_WRITE,
    DYNAMODB_READ,
    LAMBDA_REQUEST,
    LAMBDA_ARM_GB_SECOND,
    WEBSOCKET_MESSAGE,
    WEBSOCKET_CONNECTION_MINUTE,
    SQS_REQUEST,
    STEP_FUNCTIONS_EXPRESS_REQUEST,
    STEP_FUNCTIONS_EXPRESS_GB_SECOND,
)
