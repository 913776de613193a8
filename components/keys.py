"""The customer-managed KMS key of one region (`streamer:customerManagedKey`), or the one
given by ARN (`streamer:kmsKeyArn`); without either, AWS-owned and AWS-managed keys.

The key encrypts the region's tables (or replicas), dead-letter queues, SNS topics, log
groups and function environments. Its policy grants what each service needs:

- the account itself, so IAM policies can grant use of the key (KMS's default key policy,
  kms/latest/developerguide/key-policy-default.html);
- DynamoDB, on behalf of the account's principals allowed to use the tables
  (kms:ViaService dynamodb.<region>.amazonaws.com; amazondynamodb/latest/developerguide/
  encryption.usagenotes.html, "Customer managed key policy");
- CloudWatch Logs, for the account's log groups of this region, bound by the encryption
  context (AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html);
- SNS, EventBridge and CloudWatch alarms, which deliver into the encrypted queues and
  topics (AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html and
  sns/latest/dg/sns-key-management.html, "compatibility between event sources from AWS
  services and encrypted" queues and topics: kms:GenerateDataKey*, kms:Decrypt).
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from components.settings import StackSettings

#: Encrypting, decrypting and data keys, which the services' statements are given.
USE_ACTIONS = (
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:DescribeKey",
)
#: The services that put messages into the encrypted topics and queues.
DELIVERING_SERVICES = ("sns.amazonaws.com", "events.amazonaws.com", "cloudwatch.amazonaws.com")


def key_policy(account: str, region: str) -> dict[str, Any]:
    """The key policy of a region's key: each service may use it for this account only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministersAndDelegatesThroughIam",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "DynamoDbForTheAccountsPrincipals",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": [*USE_ACTIONS, "kms:CreateGrant"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "kms:ViaService": f"dynamodb.{region}.amazonaws.com",
                        "kms:CallerAccount": account,
                    }
                },
            },
            {
                "Sid": "CloudWatchLogsForTheAccountsLogGroups",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                "Action": list(USE_ACTIONS),
                "Resource": "*",
                "Condition": {
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:aws:logs:{region}:{account}:log-group:*"
                        )
                    }
                },
            },
            {
                "Sid": "ServicesDeliveringToEncryptedQueuesAndTopics",
                "Effect": "Allow",
                "Principal": {"Service": list(DELIVERING_SERVICES)},
                "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
            },
        ],
    }


def region_key(
    name: str, settings: StackSettings, region: str, prefix: str, provider: aws.Provider
) -> pulumi.Output[str] | None:
    """The ARN of `region`'s customer-managed key: given, or created here; None: none."""
    if region in settings.kms_key_arns:
        return pulumi.Output.from_input(settings.kms_key_arns[region])
    if not settings.customer_managed_key:
        return None
    opts = pulumi.ResourceOptions(provider=provider)
    account = aws.get_caller_identity_output(
        opts=pulumi.InvokeOutputOptions(provider=provider)
    ).account_id
    key = aws.kms.Key(
        f"{name}-key",
        description=f"{prefix}: tables, queues, topics, logs and function environments",
        enable_key_rotation=True,
        # The longest wait KMS allows before deleting a key scheduled for deletion.
        deletion_window_in_days=30,
        policy=account.apply(lambda account_id: json.dumps(key_policy(account_id, region))),
        # Without the key nothing it encrypted can be read: it outlives a protected stack.
        opts=pulumi.ResourceOptions(
            provider=provider, retain_on_delete=settings.deletion_protection
        ),
    )
    aws.kms.Alias(f"{name}-key-alias", name=f"alias/{prefix}", target_key_id=key.key_id, opts=opts)
    return key.arn
