"""The HTTP API of one region: start a request over HTTP, read or long-poll it.

- Both routes (`POST /requests`, `GET /requests/{id}`) behind the WebSocket API's own
  REQUEST Lambda authorizer function, so both APIs accept exactly the same tokens (RS256
  or ES256 from the configured JWKS URL or PEM key, watch tokens): payload format 2.0,
  simple responses, identity source the `Authorization` header, answers cached per
  header value for `streamer:httpAuthorizerCacheS`. API Gateway's native JWT authorizer
  is not used: it needs OIDC discovery and accepts only RSA keys
  (docs.aws.amazon.com/apigateway/latest/developerguide/http-api-jwt-authorizer.html).
- CORS from `streamer:cors` (`streamer.cors.CorsRules`, the rules the local stack
  answers with); without allowed origins the API has no CORS configuration.
- One AWS_PROXY integration (payload format 2.0) to the HTTP function, which has its
  own role: the requests table only (create, read, finish; the per-user cap's index).
- The `$default` stage, auto-deployed, throttled like the WebSocket stage, with
  access logs; the function may be invoked by this API only, the authorizer by this
  API's authorizer only.
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
from streamer.cors import CorsRules

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
    """Names, the region, the WebSocket URL to hand out, and the shared authorizer function."""

    function_name: str
    region: RegionalContext
    websocket_url: pulumi.Input[str]
    #: The shared authorizer's `live` alias.
    authorizer: aws.lambda_.Alias


def cors_configuration(rules: CorsRules) -> aws.apigatewayv2.ApiCorsConfigurationArgs | None:
    """The API's `corsConfiguration` from the stack's rules; None when no origin is allowed."""
    if not rules.enabled:
        return None
    return aws.apigatewayv2.ApiCorsConfigurationArgs(
        allow_origins=list(rules.allow_origins),
        allow_methods=list(rules.allow_methods),
        allow_headers=list(rules.allow_headers),
        expose_headers=list(rules.expose_headers) or None,
        max_age=rules.max_age_s,
    )


class HttpApi(pulumi.ComponentResource):
    """API (with CORS), Lambda authorizer, routes, integration, stage, function, permissions."""

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
        function = self.function.alias

        api = aws.apigatewayv2.Api(
            f"{name}-api",
            name=f"{args.region.prefix}-http",
            protocol_type="HTTP",
            cors_configuration=cors_configuration(settings.cors),
            opts=child,
        )
        authorizer = aws.apigatewayv2.Authorizer(
            f"{name}-authorizer",
            api_id=api.id,
            name="tokens",
            authorizer_type="REQUEST",
            authorizer_uri=args.authorizer.invoke_arn,
            authorizer_payload_format_version="2.0",
            enable_simple_responses=True,
            identity_sources=[TOKEN_SOURCE],
            # Cached per identity source value, that is per token.
            authorizer_result_ttl_in_seconds=settings.http_authorizer_cache_s,
            opts=child,
        )
        # http-api-lambda-authorizer.html: the invoke permission's source is the authorizer.
        aws.lambda_.Permission(
            f"{name}-authorizer-invoke",
            action="lambda:InvokeFunction",
            function=args.authorizer.function_name,
            qualifier=args.authorizer.name,
            principal="apigateway.amazonaws.com",
            source_arn=pulumi.Output.concat(api.execution_arn, "/authorizers/", authorizer.id),
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
            aws.apigatewayv2.Route(
                f"{name}-{slug}-route",
                api_id=api.id,
                route_key=key,
                target=pulumi.Output.concat("integrations/", integration.id),
                authorization_type="CUSTOM",
                authorizer_id=authorizer.id,
                opts=child,
            )
        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs",
            name=f"/{args.region.prefix}/http-access",
            retention_in_days=settings.log_retention_days,
            kms_key_id=args.region.kms_key_arn,
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
            function=function.function_name,
            qualifier=function.name,
            principal="apigateway.amazonaws.com",
            source_arn=pulumi.Output.concat(api.execution_arn, "/*/*/requests*"),
            opts=child,
        )

        self.url = stage.invoke_url
        self.register_outputs({"url": self.url, "alias_arn": function.arn})
