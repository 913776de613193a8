"""The HTTP API of one region: start a request over HTTP, read or long-poll it.

- `POST /requests` behind API Gateway's native JWT authorizer (issuer and audience
  from the stack's configuration). That authorizer fetches the issuer's JWKS itself
  (`{issuer}/.well-known/openid-configuration`), so it exists only when the stack
  trusts a JWKS issuer; a stack configured with a PEM public key gets no API-level
  authorizer and the function verifies the bearer token itself.
- `GET /requests/{id}` without an API-level authorizer: it accepts a watch token
  (HS256, which a JWT authorizer cannot verify) as well as a user token, and the
  function verifies either.
- One AWS_PROXY integration (payload format 2.0) to the HTTP function, which has its
  own role: the requests table only (create, read, finish; the per-user cap's index).
- The `$default` stage, auto-deployed, throttled like the WebSocket stage, with
  access logs; the function may be invoked by this API only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.context import RegionalContext
from components.functions import StreamerFunction, function_args
from components.settings import API_INTEGRATION_LIMIT_S
from streamer import config

POST_REQUESTS = "POST /requests"
GET_REQUEST = "GET /requests/{id}"
ROUTE_KEYS = (POST_REQUESTS, GET_REQUEST)
TOKEN_SOURCE = "$request.header.Authorization"
STAGE = "$default"

#: Access log fields; never the token.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "requestTimeEpoch": "$context.requestTimeEpoch",
        "sourceIp": "$context.identity.sourceIp",
        "authorizerError": "$context.authorizer.error",
        "integrationLatency": "$context.integrationLatency",
        "error": "$context.error.message",
    },
    sort_keys=True,
)


@dataclass
class HttpApiArgs:
    """Names, the stack's settings and tables, the code, and the WebSocket URL to hand out."""

    function_name: str
    region: RegionalContext
    websocket_url: pulumi.Input[str]


class HttpApi(pulumi.ComponentResource):
    """API, JWT authorizer (JWKS issuers), routes, integration, stage, function, permission."""

    url: pulumi.Output[str]
    function: StreamerFunction

    def __init__(
        self, name: str, args: HttpApiArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("streamer:components:HttpApi", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings = args.region.settings

        self.function = StreamerFunction(
            args.function_name,
            function_args(
                "http", args.region, resources={config.WEBSOCKET_URL: args.websocket_url}
            ),
            opts=child,
        )
        function = self.function.function

        api = aws.apigatewayv2.Api(
            f"{name}-api", name=f"{args.region.prefix}-http", protocol_type="HTTP", opts=child
        )
        authorizer = None
        if settings.jwt.jwks_url is not None:
            authorizer = aws.apigatewayv2.Authorizer(
                f"{name}-authorizer",
                api_id=api.id,
                name="jwt",
                authorizer_type="JWT",
                identity_sources=[TOKEN_SOURCE],
                jwt_configuration=aws.apigatewayv2.AuthorizerJwtConfigurationArgs(
                    issuer=settings.jwt.issuer, audiences=[settings.jwt.audience]
                ),
                opts=child,
            )
        integration = aws.apigatewayv2.Integration(
            f"{name}-integration",
            api_id=api.id,
            integration_type="AWS_PROXY",
            integration_method="POST",
            integration_uri=function.invoke_arn,
            payload_format_version="2.0",
            timeout_milliseconds=API_INTEGRATION_LIMIT_S * 1000,
            opts=child,
        )
        for key, slug in ((POST_REQUESTS, "post-requests"), (GET_REQUEST, "get-request")):
            guarded = authorizer is not None and key == POST_REQUESTS
            aws.apigatewayv2.Route(
                f"{name}-{slug}-route",
                api_id=api.id,
                route_key=key,
                target=pulumi.Output.concat("integrations/", integration.id),
                authorization_type="JWT" if guarded else "NONE",
                authorizer_id=authorizer.id if guarded and authorizer else None,
                opts=child,
            )
        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs",
            name=f"/{args.region.prefix}/http-access",
            retention_in_days=settings.log_retention_days,
            opts=child,
        )
        stage = aws.apigatewayv2.Stage(
            f"{name}-stage",
            api_id=api.id,
            name=STAGE,
            auto_deploy=True,
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_burst_limit=settings.throttle.burst_limit,
                throttling_rate_limit=settings.throttle.rate_limit,
                detailed_metrics_enabled=True,
            ),
            access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(
                destination_arn=access_logs.arn, format=ACCESS_LOG_FORMAT
            ),
            opts=child,
        )
        aws.lambda_.Permission(
            f"{name}-invoke",
            action="lambda:InvokeFunction",
            function=function.name,
            principal="apigateway.amazonaws.com",
            source_arn=pulumi.Output.concat(api.execution_arn, "/*/*/requests*"),
            opts=child,
        )

        self.url = stage.invoke_url
        self.register_outputs({"url": self.url, "function_arn": function.arn})
