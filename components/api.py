"""The WebSocket API of one region: routes, the `$connect` authorizer, stage and access logs.

`$connect` runs the REQUEST authorizer (token from the `token` query parameter) and then
the connect function; `$disconnect` and `$default` have no authorizer: API Gateway only
calls them for connections that were authorized. `$default` is a two-way route (route
response `$default`), so the router's sync answers and acknowledgments come back as
the integration response. The deployment is replaced whenever any argument of a route,
integration, route response or the authorizer changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
#: What the bootstrap project (bootstrap/__main__.py) exports for its account and region.
BOOTSTRAP_ROLE_OUTPUT, BOOTSTRAP_REGION_OUTPUT = "cloudwatchRoleArn", "region"


class BootstrapMissing(RuntimeError):
    """Logging is on but the account's bootstrap for the region is missing or elsewhere."""


def account_logging_role(outputs: Mapping[str, Any], stack: str, region: str) -> str:
    """The CloudWatch Logs role `region`'s bootstrap stack set for API Gateway, from that
    stack's outputs; raises `BootstrapMissing` saying what to do when it set none there.

    A WebSocket stage with access or execution logging needs that role in the account's
    API Gateway settings, or its update fails with "CloudWatch Logs role ARN must be set
    in account settings to enable logging" (apigateway developer guide, set-up-logging).
    """
    role, covered = outputs.get(BOOTSTRAP_ROLE_OUTPUT), outputs.get(BOOTSTRAP_REGION_OUTPUT)
    if not role:
        raise BootstrapMissing(
            f"streamer:apiGatewayLogging is on, but the bootstrap stack {stack} reports no "
            f"{BOOTSTRAP_ROLE_OUTPUT}: API Gateway in {region} has no CloudWatch Logs role, "
            "which the WebSocket stage's access logs need. Run the bootstrap project once "
            f"for this account and region (cd bootstrap/ && pulumi stack init {stack} && "
            f"pulumi config set aws:region {region} && pulumi up; docs/deploying.md, "
            '"Bootstrap an account"), or set streamer:apiGatewayLogging false to deploy '
            "without access logs."
        )
    if covered != region:
        raise BootstrapMissing(
            f"streamer:bootstrapStack: {stack} bootstraps {covered}, not {region}: name "
            "each region's own bootstrap stack ({region} in the name)."
        )
    return role


def reported_arguments(resource: pulumi.CustomResource) -> pulumi.Output[dict[str, Any]]:
    """Every property `resource` reports (its arguments as AWS keeps them, and what AWS
    computes from them) by its Pulumi name, with its type and id.

    Read from the resource class's output properties (the SDK marks each getter with
    its Pulumi name), so an argument a later provider version adds is followed too.
    """
    names = {
        prop.fget._pulumi_name: python_name
        for cls in type(resource).__mro__
        for python_name, prop in vars(cls).items()
        if isinstance(prop, property) and hasattr(prop.fget, "_pulumi_name")
    }
    return pulumi.Output.all(
        type=resource.pulumi_type,
        id=resource.id,
        **{name: getattr(resource, python_name) for name, python_name in names.items()},
    )


def deployment_trigger(states: Sequence[Mapping[str, Any]]) -> str:
    """A digest of the routing resources' reported state: it changes, and so the API is
    redeployed, exactly when any argument of any of them does."""
    text = json.dumps(list(states), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class WebSocketApiArgs:
    """The functions behind the routes and the stage's name, throttling and logging."""

    api_name: str
    #: The functions' `live` aliases: API Gateway never invokes $LATEST.
    authorizer: aws.lambda_.Alias
    routes: Mapping[str, aws.lambda_.Alias]
    stage_name: str
    throttle: Throttle
    log_retention_days: int
    access_log_group_name: str
    #: The account's CloudWatch Logs role for API Gateway, as `account_logging_role`
    #: checked it; None: the stage writes no access logs and needs no account setting.
    account_logging_role: pulumi.Input[str] | None = None
    #: A custom domain mapped to the stage, with its ACM certificate in this region.
    domain_name: str | None = None
    certificate_arn: str | None = None
    #: The access logs' customer-managed key; None: CloudWatch Logs' own encryption.
    kms_key_arn: pulumi.Input[str] | None = None


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
            function=args.authorizer.function_name,
            qualifier=args.authorizer.name,
            principal="apigateway.amazonaws.com",
            source_arn=pulumi.Output.concat(api.execution_arn, "/authorizers/", authorizer.id),
            opts=child,
        )

        routed: list[pulumi.CustomResource] = [authorizer]
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
                function=function.function_name,
                qualifier=function.name,
                principal="apigateway.amazonaws.com",
                source_arn=pulumi.Output.concat(api.execution_arn, "/", args.stage_name, "/", key),
                opts=child,
            )
            routed += [integration, route]
            if key == DEFAULT:
                response = aws.apigatewayv2.RouteResponse(
                    f"{name}-default-response",
                    api_id=api.id,
                    route_id=route.id,
                    route_response_key="$default",
                    opts=child,
                )
                routed.append(response)

        deployment = aws.apigatewayv2.Deployment(
            f"{name}-deployment",
            api_id=api.id,
            description="Streamer WebSocket routes",
            # API Gateway serves routes, integrations and authorizers as they were at the
            # last deployment: "every time you update an API, you must redeploy it"
            # (apigateway-set-up-websocket-deployment). Triggers force a new deployment.
            triggers={
                "routes": pulumi.Output.all(*map(reported_arguments, routed)).apply(
                    deployment_trigger
                )
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=routed),
        )
        stage = aws.apigatewayv2.Stage(
            f"{name}-stage",
            api_id=api.id,
            name=args.stage_name,
            deployment_id=deployment.id,
            # Every route's throttle: a token bucket over all clients together, best effort
            # ("targets rather than guaranteed request ceilings", websocket-api-protect);
            # the per-connection limit is the router's (docs/security.md).
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_burst_limit=args.throttle.burst_limit,
                throttling_rate_limit=args.throttle.rate_limit,
                detailed_metrics_enabled=True,
            ),
            access_log_settings=self._access_logs(name, args, child),
            opts=child,
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

    def _access_logs(
        self, name: str, args: WebSocketApiArgs, opts: pulumi.ResourceOptions
    ) -> aws.apigatewayv2.StageAccessLogSettingsArgs | None:
        """The access log group and the stage's settings for it, once the account's role
        is known to be set; None without logging."""
        if args.account_logging_role is None:
            return None
        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs",
            name=args.access_log_group_name,
            retention_in_days=args.log_retention_days,
            kms_key_id=args.kms_key_arn,
            opts=opts,
        )
        return aws.apigatewayv2.StageAccessLogSettingsArgs(
            # Through the checked role, so the stage waits for (and fails with) the check.
            destination_arn=pulumi.Output.all(args.account_logging_role, access_logs.arn).apply(
                lambda checked: checked[1]
            ),
            format=ACCESS_LOG_FORMAT,
        )
