"""Optional VPC and customer-managed keys: nothing of either unless configured, and when
configured, every function, table, queue, topic and log group uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.functions import VPC_ACCESS_POLICY
from components.plan import Plan
from components.settings import ConfigError
from streamer import catalog

from .conftest import run_stack
from .graph import PROJECT, functions, grants
from .test_infra_iam_lint import generated_policies, lint

pytestmark = pytest.mark.infra

ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
KEY = "aws:kms/key:Key"
QUEUE, TOPIC = "aws:sqs/queue:Queue", "aws:sns/topic:Topic"
LOG_GROUP, TABLE = "aws:cloudwatch/logGroup:LogGroup", "aws:dynamodb/table:Table"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"


def vpc_of(region: str, **more: object) -> dict:
    return {
        "vpcId": "vpc-0a1b2c3d",
        "subnetIds": ["subnet-0a1", "subnet-0b2"],
        "securityGroupIds": ["sg-0c3"],
        "routeTableIds": ["rtb-0d4", "rtb-0e5"],
        **more,
    }


@pytest.fixture(scope="module")
def in_vpc(artifacts_dir: Path) -> Plan:
    return run_stack("dev", artifacts_dir, overrides={"vpc": {"us-east-1": vpc_of("us-east-1")}})


@pytest.fixture(scope="module")
def with_key(artifacts_dir: Path) -> Plan:
    return run_stack("prod", artifacts_dir, overrides={"customerManagedKey": True})


def test_without_config_nothing_runs_in_a_vpc_or_uses_a_customer_key(prod: Plan) -> None:
    # GIVEN prod as its stack file has it  WHEN the network and encryption are read
    # THEN no endpoint, no key, and every service keeps its own keys
    assert prod.of_type(ENDPOINT) == prod.of_type(KEY) == []
    for function in prod.of_type("aws:lambda/function:Function"):
        assert "vpcConfig" not in function.inputs and "kmsKeyArn" not in function.inputs
    assert all(q.inputs["sqsManagedSseEnabled"] is True for q in prod.of_type(QUEUE))
    assert not any("kmsMasterKeyId" in t.inputs for t in prod.of_type(TOPIC))
    assert not any("kmsKeyId" in g.inputs for g in prod.of_type(LOG_GROUP))
    for table in prod.of_type(TABLE):
        assert table.inputs["serverSideEncryption"] == {"enabled": True}


def test_every_function_runs_in_the_configured_subnets_with_eni_rights(in_vpc: Plan) -> None:
    # GIVEN dev with a VPC  WHEN its functions and their roles are read
    found = functions(in_vpc, "us-east-1")
    attached = {a.inputs["role"]: a.inputs["policyArn"] for a in in_vpc.of_type(ATTACHMENT)}

    # THEN each one is in the subnets and security groups given, and its role may manage
    # the network interfaces Lambda makes there
    assert set(found) == set(catalog.FUNCTIONS)
    for name, function in found.items():
        assert function.inputs["vpcConfig"] == {
            "subnetIds": ["subnet-0a1", "subnet-0b2"],
            "securityGroupIds": ["sg-0c3"],
        }
        role = in_vpc.named(f"{PROJECT}-us-east-1-{name}-role").outputs["name"]
        assert attached[role] == VPC_ACCESS_POLICY


def test_dynamodb_is_reached_through_a_gateway_endpoint_and_no_execute_api_endpoint_exists(
    in_vpc: Plan,
) -> None:
    # GIVEN dev with a VPC and no EventBridge endpoint asked for
    (endpoint,) = in_vpc.of_type(ENDPOINT)

    # THEN the one endpoint is DynamoDB's gateway on the subnets' route tables (an
    # execute-api endpoint would not serve @connections and, with private DNS, would cut
    # the VPC off from the public API: components/network.py)
    assert endpoint.inputs == {
        "vpcId": "vpc-0a1b2c3d",
        "serviceName": "com.amazonaws.us-east-1.dynamodb",
        "vpcEndpointType": "Gateway",
        "routeTableIds": ["rtb-0d4", "rtb-0e5"],
    }


def test_the_eventbridge_interface_endpoint_is_made_when_asked_for(artifacts_dir: Path) -> None:
    vpc = {"us-east-1": vpc_of("us-east-1", eventBridgeEndpoint=True)}
    plan = run_stack("dev", artifacts_dir, overrides={"vpc": vpc})
    events = [e for e in plan.of_type(ENDPOINT) if e.inputs["vpcEndpointType"] == "Interface"]
    assert [e.inputs for e in events] == [
        {
            "vpcId": "vpc-0a1b2c3d",
            "serviceName": "com.amazonaws.us-east-1.events",
            "vpcEndpointType": "Interface",
            "subnetIds": ["subnet-0a1", "subnet-0b2"],
            "securityGroupIds": ["sg-0c3"],
            "privateDnsEnabled": True,
        }
    ]


@pytest.mark.parametrize(
    ("stack", "vpc", "key"),
    [
        ("prod", {"us-east-1": vpc_of("us-east-1")}, "streamer:vpc"),
        ("dev", {"us-east-1": {**vpc_of("us-east-1"), "subnetIds": []}}, "subnetIds"),
        (
            "dev",
            {"us-east-1": {**vpc_of("us-east-1"), "securityGroupIds": ["web"]}},
            "securityGroupIds",
        ),
        ("dev", {"us-east-1": {**vpc_of("us-east-1"), "natGateway": True}}, "unknown keys"),
        ("dev", {"us-east-1": vpc_of("us-east-1", egress="nat")}, "egress must be a boolean"),
    ],
)
def test_a_vpc_lambda_could_not_use_is_refused(
    artifacts_dir: Path, stack: str, vpc: dict, key: str
) -> None:
    with pytest.raises(ConfigError, match=key):
        run_stack(stack, artifacts_dir, overrides={"vpc": vpc})


def test_a_multi_region_stack_in_a_vpc_without_stated_egress_is_refused(
    artifacts_dir: Path,
) -> None:
    # GIVEN prod (two regions) in a VPC in each region, eu-west-1's without `egress`
    vpc = {
        "us-east-1": vpc_of("us-east-1", egress=True),
        "eu-west-1": vpc_of("eu-west-1"),
    }

    # WHEN the program runs  THEN it stops before creating anything, naming the key and
    # why: the DynamoDB gateway endpoint serves its own region only, and the functions
    # write to the other region's replica
    with pytest.raises(ConfigError, match=r"streamer:vpc\.eu-west-1\.egress: .*NAT gateway"):
        run_stack("prod", artifacts_dir, overrides={"vpc": vpc})


def test_a_multi_region_stack_in_a_vpc_with_egress_gets_each_regions_gateway_endpoint(
    artifacts_dir: Path,
) -> None:
    # GIVEN prod in a VPC in each region, each stating its NAT egress
    vpc = {region: vpc_of(region, egress=True) for region in ("us-east-1", "eu-west-1")}

    # WHEN the program runs
    plan = run_stack("prod", artifacts_dir, overrides={"vpc": vpc})

    # THEN each region has its own region's DynamoDB gateway endpoint only (the other
    # region's replica is reached through the NAT), and its functions run in the VPC
    endpoints = {(e.region, e.inputs["serviceName"]) for e in plan.of_type(ENDPOINT)}
    assert endpoints == {
        ("us-east-1", "com.amazonaws.us-east-1.dynamodb"),
        ("eu-west-1", "com.amazonaws.eu-west-1.dynamodb"),
    }
    for region in ("us-east-1", "eu-west-1"):
        for function in functions(plan, region).values():
            assert function.inputs["vpcConfig"]["subnetIds"] == ["subnet-0a1", "subnet-0b2"]


def test_a_single_region_stack_in_a_vpc_needs_no_egress_statement(artifacts_dir: Path) -> None:
    # GIVEN dev (one region) in a VPC without `egress`: its functions reach only their own
    # region's tables, which the gateway endpoint serves
    vpc = {"us-east-1": vpc_of("us-east-1", egress=False)}

    # WHEN the program runs  THEN it plans the VPC's endpoint as without the key
    plan = run_stack("dev", artifacts_dir, overrides={"vpc": vpc})
    assert [e.inputs["serviceName"] for e in plan.of_type(ENDPOINT)] == [
        "com.amazonaws.us-east-1.dynamodb"
    ]


def test_a_created_key_per_region_rotates_and_lets_each_service_use_it(with_key: Plan) -> None:
    # GIVEN prod with customer-managed keys  WHEN its keys are read
    keys = {k.region: k for k in with_key.of_type(KEY)}

    # THEN each region has one, rotated, whose policy lets the account delegate through
    # IAM, DynamoDB act for the account's principals, CloudWatch Logs use it for this
    # region's log groups, and SNS, EventBridge and alarms deliver into encrypted targets
    assert set(keys) == {"us-east-1", "eu-west-1"}
    for region, key in keys.items():
        assert key.inputs["enableKeyRotation"] is True
        statements = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}
        assert statements["AccountAdministersAndDelegatesThroughIam"]["Principal"] == {
            "AWS": "arn:aws:iam::123456789012:root"
        }
        dynamodb = statements["DynamoDbForTheAccountsPrincipals"]["Condition"]["StringEquals"]
        assert dynamodb["kms:ViaService"] == f"dynamodb.{region}.amazonaws.com"
        logs = statements["CloudWatchLogsForTheAccountsLogGroups"]
        assert logs["Principal"] == {"Service": f"logs.{region}.amazonaws.com"}
        assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == (
            f"arn:aws:logs:{region}:123456789012:log-group:*"
        )
        delivering = statements["ServicesDeliveringToEncryptedQueuesAndTopics"]
        assert set(delivering["Principal"]["Service"]) == {
            "sns.amazonaws.com",
            "events.amazonaws.com",
            "cloudwatch.amazonaws.com",
        }
        assert set(delivering["Action"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}


def test_everything_that_stores_data_uses_its_regions_key(with_key: Plan) -> None:
    # GIVEN prod with customer-managed keys
    keys = {k.region: k.outputs["arn"] for k in with_key.of_type(KEY)}

    # THEN the tables and each replica, every queue, topic, log group and function
    # environment of a region use that region's key, and no queue uses SSE-SQS besides
    for table in with_key.of_type(TABLE):
        assert table.inputs["serverSideEncryption"]["kmsKeyArn"] == keys[table.region]
        assert {r["regionName"]: r["kmsKeyArn"] for r in table.inputs["replicas"]} == {
            "eu-west-1": keys["eu-west-1"]
        }
    for resources, argument in (
        (with_key.of_type(QUEUE), "kmsMasterKeyId"),
        (with_key.of_type(TOPIC), "kmsMasterKeyId"),
        (with_key.of_type(LOG_GROUP), "kmsKeyId"),
        (with_key.of_type("aws:lambda/function:Function"), "kmsKeyArn"),
    ):
        assert resources
        for resource in resources:
            assert resource.inputs[argument] == keys[resource.region], resource.name
    assert not any(q.inputs["sqsManagedSseEnabled"] for q in with_key.of_type(QUEUE))


def test_each_function_may_decrypt_with_its_regions_key(with_key: Plan) -> None:
    keys = {k.region: k.outputs["arn"] for k in with_key.of_type(KEY)}
    for region, key in keys.items():
        for name in catalog.FUNCTIONS:
            assert {("kms:Decrypt", key), ("kms:GenerateDataKey", key)} <= grants(
                with_key, region, name
            )


def test_given_keys_are_used_and_none_is_created(artifacts_dir: Path) -> None:
    # GIVEN prod with one multi-Region key id, by region
    arn = "arn:aws:kms:{region}:123456789012:key/mrk-1234abcd"
    plan = run_stack("prod", artifacts_dir, overrides={"kmsKeyArn": arn})

    # THEN no key is made, and each region's data uses the key of that region
    assert plan.of_type(KEY) == []
    (table, *_) = plan.of_type(TABLE)
    assert table.inputs["serverSideEncryption"]["kmsKeyArn"] == arn.format(region="us-east-1")
    assert table.inputs["replicas"][0]["kmsKeyArn"] == arn.format(region="eu-west-1")
    for topic in plan.of_type(TOPIC):
        assert topic.inputs["kmsMasterKeyId"] == arn.format(region=topic.region)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (
            {"customerManagedKey": True, "kmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/a"},
            "not both",
        ),
        ({"kmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/abc"}, "not in us-east-1"),
        ({"kmsKeyArn": "alias/streamer"}, "not a KMS key ARN"),
    ],
)
def test_keys_a_region_could_not_use_are_refused(
    artifacts_dir: Path, overrides: dict, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        run_stack("dev", artifacts_dir, overrides=overrides)


@pytest.mark.parametrize("variant", ["with_key", "in_vpc"])
def test_the_policies_of_keyed_and_vpc_stacks_pass_the_lint(
    request: pytest.FixtureRequest, variant: str
) -> None:
    # GIVEN every policy of a stack with keys or in a VPC, but the key policies: in a key
    # policy "Resource": "*" means the key itself (kms/latest/developerguide/key-policy-
    # overview.html), which an identity-policy lint reads as every resource; their
    # statements are checked one by one above
    plan: Plan = request.getfixturevalue(variant)
    key_policies = {f"{k.name}.policy" for k in plan.of_type(KEY)}
    documents = {
        name: document
        for name, document in generated_policies(plan).items()
        if name not in key_policies
    }
    assert any("kms:Decrypt" in document for document in documents.values()) == (
        variant == "with_key"
    )

    # WHEN each is linted  THEN none has a finding
    findings = {name: lint(document) for name, document in documents.items()}
    assert {name: found for name, found in findings.items() if found} == {}
