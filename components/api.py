"""The WebSocket API of one region: routes, the `$connect` authorizer, stage and access logs.

`$connect` runs the REQUEST authorizer (token from the `token` query parameter) and then
the connect function; `$disconnect` and `$default` have no authorizer: API Gateway only
calls them for connections that were authorized. `$default` is a two-way route (route
response `$default`), so the router's sync answers and acknowledgments come back as
the integration response. The deployment is redeployed whenever a route, integration
or the authorizer changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import policies
from components.settings import Throttle

CONNECT, DISCONNECT, DEFAULT = "$connect", "$disconnect", "$default"
ROUTE_KEYS = (CONNECT, DISCONNECT, DEFAULT)
TOKEN_SOURCE = "route.request.querystring.token"

#: Access log fields: who connected, which route, what came back; never the token.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "extendedRequestId": "$context.extendedRequestId",
        "connectionId": "$context.connectionId",
        "eventType": "$context.eventType",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "requestTimeEpoch": "$context.requestTimeEpoch",
        "sourceIp": "$context.identity.sourceIp",
        "authorizerError": "$context.authorizer.error",
        "integrationLatency": "$context.integration.latency",
        "integrationStatus": "$context.integration.status",
        "error": "$context.error.message",
    },
    sort_keys=True,
)
_PUSH_TO_CLOUDWATCH = "policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"


def deployment_trigger(parts: Sequence[str]) -> str:
    """A digest of every route, integration, target and authorizer identity: it changes,
    and so the API is redeployed, exactly when one of them does."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass
class WebSocketApiArgs:
    """The functions behind the routes and the stage's name, throttling and logging."""

    api_name: str
    authorizer: aws.lambda_.Function
    routes: Mapping[str, aws.lambda_.Function]
    stage_name: str
    throttle: Throttle
    log_retention_days: int
    access_log_group_name: str
    manage_account_logging: bool = False
    #: A custom domain mapped to the stage, with its ACM certificate in this region.
    domain_name: str | None = None
    certificate_arn: str | None = None


class WebSocketApi(pulumi.ComponentResource):
    """API, authorizer, integrations, routes, route response, deployment, stage, permissions."""

    url: pulumi.Output[str]
    management_endpoint: pulumi.Output[str]
    connections_arn: pulumi.Output[str]
    #: The custom domain's `wss://` URL and the host its DNS record must point at; None without one.
    custom_domain_url: pulumi.Output[str] | None = None
    custom_domain_target: pulumi.Output[str] | None = None

    def __init__(
        self, name: str, args: WebSocketApiArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("streamer:components:WebSocketApi", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if set(args.routes) != set(ROUTE_KEYS):
            raise ValueError(f"routes must be exactly {ROUTE_KEYS}")

        api = aws.apigatewayv2.Api(
            f"{name}-api",
            name=args.api_name,
            protocol_type="WEBSOCKET",
            route_selection_expression="$request.body.action",
            opts=child,
        )
        authorizer = aws.apigatewayv2.Authorizer(
            f"{name}-authorizer",
            api_id=api.id,
            name="jwt",
            authorizer_type="REQUEST",
            authorizer_uri=args.authorizer.invoke_arn,
            identity_sources=[TOKEN_SOURCE],
            opts=child,
        )
        aws.lambda_.Permission(
            f"{name}-authorizer-invoke",
            action="lambda:InvokeFunction",
            function=args.authorizer.name,
            principal="apigateway.amazonaws.com",
            source_arn=pulumi.Output.concat(api.execution_arn, "/authorizers/", authorizer.id),
            opts=child,
        )

        routed: list[pulumi.Resource] = [authorizer]
        fingerprint: list[pulumi.Input[str]] = [authorizer.id]
        for key in ROUTE_KEYS:
            function = args.routes[key]
            slug = key.lstrip("$")
            integration = aws.apigatewayv2.Integration(
                f"{name}-{slug}-integration",
                api_id=api.id,
                integration_type="AWS_PROXY",
                integration_method="POST",
                integration_uri=function.invoke_arn,
                opts=child,
            )
            route = aws.apigatewayv2.Route(
                f"{name}-{slug}-route",
                api_id=api.id,
                route_key=key,
                target=pulumi.Output.concat("integrations/", integration.id),
                authorization_type="CUSTOM" if key == CONNECT else "NONE",
                authorizer_id=authorizer.id if key == CONNECT else None,
                route_response_selection_expression="$default" if key == DEFAULT else None,
                opts=child,
            )
            aws.lambda_.Permission(
                f"{name}-{slug}-invoke",
                action="lambda:InvokeFunction",
                function=function.name,
                principal="apigateway.amazonaws.com",
                source_arn=pulumi.Output.concat(api.execution_arn, "/", args.stage_name, "/", key),
                opts=child,
            )
            routed += [integration, route]
            fingerprint += [key, integration.id, route.id, function.invoke_arn]
            if key == DEFAULT:
                response = aws.apigatewayv2.RouteResponse(
                    f"{name}-default-response",
                    api_id=api.id,
                    route_id=route.id,
                    route_response_key="$default",
                    opts=child,
                )
                routed.append(response)
                fingerprint.append(response.id)

        deployment = aws.apigatewayv2.Deployment(
            f"{name}-deployment",
            api_id=api.id,
            description="Streamer WebSocket routes",
            triggers={"routes": pulumi.Output.all(*fingerprint).apply(deployment_trigger)},
            opts=pulumi.ResourceOptions(parent=self, depends_on=routed),
        )
        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs",
            name=args.access_log_group_name,
            retention_in_days=args.log_retention_days,
            opts=child,
        )
        stage_depends_on = []
        if args.manage_account_logging:
            stage_depends_on.append(self._account_logging(name, api, child))
        stage = aws.apigatewayv2.Stage(
            f"{name}-stage",
            api_id=api.id,
            name=args.stage_name,
            deployment_id=deployment.id,
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_burst_limit=args.throttle.burst_limit,
                throttling_rate_limit=args.throttle.rate_limit,
                detailed_metrics_enabled=True,
            ),
            access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(
                destination_arn=access_logs.arn, format=ACCESS_LOG_FORMAT
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=stage_depends_on),
        )

        self.api_id = api.id
        self.url = stage.invoke_url
        self.management_endpoint = stage.invoke_url.apply(
            lambda url: "https://" + url.removeprefix("wss://")
        )
        self.connections_arn = policies.connections_arn(api.execution_arn, args.stage_name)
        if args.domain_name is not None:
            self._custom_domain(name, args, api, stage, child)
        self.register_outputs(
            {
                "url": self.url,
                "management_endpoint": self.management_endpoint,
                "connections_arn": self.connections_arn,
                "custom_domain_url": self.custom_domain_url,
            }
        )

    def _custom_domain(
        self,
        name: str,
        args: WebSocketApiArgs,
        api: aws.apigatewayv2.Api,
        stage: aws.apigatewayv2.Stage,
        opts: pulumi.ResourceOptions,
    ) -> None:
        """The custom domain, mapped at its root to this stage.

        WebSocket APIs take only regional custom domains with TLS 1.2, and the certificate
        must be in the API's region (websocket-api-custom-domain-names,
        apigateway-regional-api-custom-domain-create); the same name may be set up in
        several regions, one per API. Clients connect through it; callbacks still go to
        the execute-api endpoint (`streamer.endpoints`). The DNS record (CNAME or alias
        to `custom_domain_target`) is the domain owner's to make.
        """
        domain = aws.apigatewayv2.DomainName(
            f"{name}-domain",
            domain_name=args.domain_name,
            domain_name_configuration=aws.apigatewayv2.DomainNameDomainNameConfigurationArgs(
                certificate_arn=args.certificate_arn,
                endpoint_type="REGIONAL",
                security_policy="TLS_1_2",
            ),
            opts=opts,
        )
        aws.apigatewayv2.ApiMapping(
            f"{name}-domain-mapping",
            api_id=api.id,
            domain_name=domain.id,
            stage=stage.name,
            opts=opts,
        )
        self.custom_domain_url = pulumi.Output.concat("wss://", domain.domain_name)
        self.custom_domain_target = domain.domain_name_configuration.target_domain_name

    def _account_logging(
        self, name: str, api: aws.apigatewayv2.Api, opts: pulumi.ResourceOptions
    ) -> aws.apigateway.Account:
        """API Gateway's account-wide CloudWatch role: WebSocket access logs need it once
        per account and region (see docs/deploying.md)."""
        role = aws.iam.Role(
            f"{name}-cloudwatch-role",
            assume_role_policy=policies.assume_role_document("apigateway.amazonaws.com"),
            opts=opts,
        )
        partition = api.execution_arn.apply(lambda arn: arn.split(":")[1])
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-cloudwatch-policy",
            role=role.name,
            policy_arn=pulumi.Output.concat("arn:", partition, ":iam::aws:", _PUSH_TO_CLOUDWATCH),
            opts=opts,
        )
        return aws.apigateway.Account(
            f"{name}-account",
            cloudwatch_role_arn=role.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[attachment]),
        )
