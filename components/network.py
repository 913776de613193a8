"""The endpoints a region's functions need when they run in the stack's VPC (`streamer:vpc`).

- DynamoDB: a gateway endpoint on the subnets' route tables (free; vpc/latest/privatelink/
  gateway-endpoints.html). The region's own tables (or replicas) are reached through it;
  the stream is read by Lambda's event source mapping, outside the VPC. Another region's
  replica, which a multi-region stack's functions write to (a request's decider), is not:
  "A gateway endpoint is available only in the Region where you created it"
  (vpc/latest/privatelink/vpc-endpoints-ddb.html), so those calls take the subnets' NAT,
  which such a stack must state it has (`streamer:vpc.<region>.egress`, checked in
  components/settings.py).
- EventBridge (lifecycle events, `events:PutEvents`): an interface endpoint
  (`com.amazonaws.<region>.events`, private DNS) when `eventBridgeEndpoint` is on; else
  through the subnets' NAT.
- `@connections` (API Gateway's management API of the regional WebSocket API): no endpoint
  serves it. The `execute-api` interface endpoint is for private APIs, which are REST APIs
  only (apigateway/latest/developerguide/apigateway-private-apis.html, "Only REST APIs are
  supported"), and with its private DNS on, the VPC can no longer reach public APIs' default
  endpoints at all (same page). So this component never creates one, and the subnets need
  a route to a NAT gateway (docs/deploying.md, "VPC": the trade-off and its cost). The
  authorizer's JWKS fetch and the poller's calls to external jobs need the NAT as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.settings import VpcSettings


@dataclass
class VpcEndpointsArgs:
    """The region and its VPC settings."""

    region: str
    vpc: VpcSettings


class VpcEndpoints(pulumi.ComponentResource):
    """The DynamoDB gateway endpoint and, when asked for, the EventBridge interface endpoint."""

    def __init__(
        self, name: str, args: VpcEndpointsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("streamer:components:VpcEndpoints", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        vpc = args.vpc
        aws.ec2.VpcEndpoint(
            f"{name}-dynamodb",
            vpc_id=vpc.vpc_id,
            service_name=f"com.amazonaws.{args.region}.dynamodb",
            vpc_endpoint_type="Gateway",
            route_table_ids=list(vpc.route_table_ids),
            opts=child,
        )
        if vpc.event_bridge_endpoint:
            aws.ec2.VpcEndpoint(
                f"{name}-events",
                vpc_id=vpc.vpc_id,
                service_name=f"com.amazonaws.{args.region}.events",
                vpc_endpoint_type="Interface",
                subnet_ids=list(vpc.subnet_ids),
                security_group_ids=list(vpc.security_group_ids),
                # The SDK's default events.<region>.amazonaws.com resolves to the endpoint.
                private_dns_enabled=True,
                opts=child,
            )
        self.register_outputs({})
