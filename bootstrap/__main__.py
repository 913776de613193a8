"""Account bootstrap: API Gateway's CloudWatch Logs role in one AWS account and region.

API Gateway writes a WebSocket stage's access and execution logs with the role set in
its account settings, one per account and region; without it a stage with logging
fails with "CloudWatch Logs role ARN must be set in account settings to enable logging"
(apigateway developer guide, set-up-logging). It is account-wide, so no environment
stack owns it: this project, one stack per account and region (`aws:region`), makes the
role, sets it, and exports what the environment stacks check through a stack reference
(components/api.py reads these output names).
"""

import json

import pulumi
import pulumi_aws as aws

#: The outputs the environment stacks read.
ROLE_OUTPUT, REGION_OUTPUT = "cloudwatchRoleArn", "region"
#: AWS's managed policy for this role (apigateway developer guide, set-up-logging).
PUSH_TO_CLOUDWATCH = "policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"

region = pulumi.Config("aws").require("region")

role = aws.iam.Role(
    "apigateway-cloudwatch",
    # IAM names are account-wide: one role per region's stack.
    name=f"streamer-apigateway-cloudwatch-{region}",
    description=f"API Gateway writes access and execution logs to CloudWatch in {region}",
    assume_role_policy=json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "apigateway.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    ),
)
attachment = aws.iam.RolePolicyAttachment(
    "apigateway-cloudwatch-policy",
    role=role.name,
    # In the role's partition (aws, aws-cn, aws-us-gov), read from its ARN.
    policy_arn=role.arn.apply(lambda arn: f"arn:{arn.split(':')[1]}:iam::aws:{PUSH_TO_CLOUDWATCH}"),
)
account = aws.apigateway.Account(
    "account",
    cloudwatch_role_arn=role.arn,
    opts=pulumi.ResourceOptions(depends_on=[attachment]),
)

pulumi.export(ROLE_OUTPUT, account.cloudwatch_role_arn)
pulumi.export(REGION_OUTPUT, region)
