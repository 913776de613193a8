"""The whole local stack: starts the pieces in order, announces itself, stops them in reverse.

Ports are bound before anything slow starts, so a taken port fails at once.
The entry points are imported only after the environment they read (once per
process) is complete, including the management endpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import importlib.util
import json
import logging
import os
import secrets
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from local import dynamodb, static_site, tokens, zygote
from local.apigateway import DEFAULT_ROUTE, Api
from local.batch_provider import BatchProvider
from local.event_source_mapping import EventSourceMapping, MappingConfig
from local.eventbus import LocalEventBus
from local.faults import FaultControl
from local.functions import LambdaFunction
from local.gateway import Gateway, Integrations, Limits
from local.http_api import HttpApi
from local.ingress import EVENTBRIDGE_PATH, SNS_PATH, Ingress
from local.isolation import IsolatedFunction
from local.management import GatewayConnections, HttpResponse, HttpServer
from local.schedule import Schedule
from local.wiring import (
    DEFAULT_FUNCTION_CONCURRENCY,
    DEFAULT_PROCESSOR_CONCURRENCY,
    function_specs,
    wire,
)
from streamer import catalog, config, demo
from streamer.catalog import Trigger
from streamer.cors import ENV as CORS_ENV
from streamer.cors import CorsRules, InvalidCorsRules
from streamer.record_filter import processor_records

log = logging.getLogger("local.stack")

#: How the functions' invocations run: each execution environment a worker process, as
#: Lambda runs them, or threads of the stack's own interpreter.
PROCESSES = "processes"
THREADS = "threads"
INVOCATION_MODES = (PROCESSES, THREADS)


class StartupError(Exception):
    """The stack cannot start for a reason the user can fix; the message says which."""


@dataclass(frozen=True)
class StackOptions:
    """Everything `python -m local` can be told."""

    host: str = "127.0.0.1"
    port: int = 8080
    #: The HTTP port (`@connections` and the page); None: the next port, or free with port 0.
    http_port: int | None = None
    ready_file: Path | None = None
    jwt_public_key_file: Path | None = None
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    dynamodb: str = dynamodb.MOTO
    app: str | None = None
    #: A directory outside `lambdas/` holding the app (`sys.path`, as Lambda's code root).
    app_path: Path | None = None
    region: str = "us-east-1"
    limits: Limits = field(default_factory=Limits)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    sweep_interval_s: float = 5.0
    #: How often the poller checks WAITING requests (EventBridge's one minute on AWS).
    poll_jobs_interval_s: float = 2.0
    shutdown_grace_s: float = 10.0
    #: The processor's timeout (None: the catalog's, Lambda's maximum); a worker's lease
    #: follows it.
    processor_timeout_s: float | None = None
    #: The processor's concurrency limit (its reserved concurrency on AWS): batches past it
    #: are throttled and the stream mapping retries them.
    processor_concurrency: int = DEFAULT_PROCESSOR_CONCURRENCY
    #: The concurrency of every function without a reserved one (invocations past it wait).
    function_concurrency: int = DEFAULT_FUNCTION_CONCURRENCY
    #: `PROCESSES` (each execution environment a worker process) or `THREADS`.
    invocations: str = PROCESSES
    #: Serve the `/_faults` API (the processor then runs in worker processes in any mode).
    faults: bool = False
    state_dir: Path = tokens.STATE_DIR
    #: Publish lifecycle events to this EventBridge bus (made on a moto server); None: off.
    event_bus: str | None = None
    #: A DynamoDB already running (a region's replica of a multi-region stack): used as it
    #: is, its missing tables created, never stopped by this stack. None: start `dynamodb`.
    dynamodb_endpoint: str | None = None
    #: This stack's WebSocket API id (in every requestContext and method ARN).
    api_id: str = "local"
    #: The `@connections` endpoints of other APIs by API id (the other regions' stacks),
    #: added to this stack's own in the functions' management endpoint overrides.
    management_endpoints: Mapping[str, str] = field(default_factory=dict)


def schedule_intervals(options: StackOptions) -> dict[str, float]:
    """How often each scheduled function runs locally (EventBridge's one minute on AWS)."""
    return {"sweeper": options.sweep_interval_s, "poller": options.poll_jobs_interval_s}


@dataclass(frozen=True)
class JwtTrust:
    """What the authorizer trusts, and the dev signing key when the stack made its own."""

    public_key: str | None
    jwks_url: str | None
    issuer: str | None
    audience: str | None
    dev_key: bytes | None = None


def lambda_environment(
    options: StackOptions,
    settings: config.Settings,
    dynamodb_url: str,
    management_url: str,
    trust: JwtTrust,
    api_id: str,
) -> dict[str, str]:
    """The variables each function gets on AWS, pointed at the local endpoints.

    The management endpoint is an override for this stack's API, and for the
    other local APIs `options.management_endpoints` names (`streamer.endpoints`):
    a connection of any other API keeps its own.
    """
    overrides = {**options.management_endpoints, api_id: management_url}
    env = {
        config.REGION: options.region,
        "AWS_DEFAULT_REGION": options.region,
        "AWS_ACCESS_KEY_ID": dynamodb.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": dynamodb.SECRET_KEY,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url,
        "AWS_ENDPOINT_URL_DYNAMODBSTREAMS": dynamodb_url,
        # botocore would send streams calls to an account-based host no local server routes.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        config.CONNECTIONS_TABLE: settings.connections_table,
        config.REQUESTS_TABLE: settings.requests_table,
        config.SUBSCRIPTIONS_TABLE: settings.subscriptions_table,
        config.MANAGEMENT_ENDPOINT: ",".join(f"{api}={url}" for api, url in overrides.items()),
        # Watch tokens die with the stack: a fresh secret per run.
        config.WATCH_TOKEN_SECRET: os.environ.get(config.WATCH_TOKEN_SECRET)
        or secrets.token_urlsafe(32),
    }
    optional = {
        config.APP_MODULE: options.app,
        config.JWT_PUBLIC_KEY: trust.public_key,
        config.JWT_JWKS_URL: trust.jwks_url,
        config.JWT_ISSUER: trust.issuer,
        config.JWT_AUDIENCE: trust.audience,
    }
    env.update({name: value for name, value in optional.items() if value})
    return env


def write_ready_file(path: Path, content: dict) -> None:
    """Write JSON so a reader sees nothing or all of it: a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as file:
        json.dump(content, file, indent=2)
    os.replace(temporary, path)


def _not_found() -> HttpResponse:
    return HttpResponse(404, b'{"message":"Not Found"}', {"Content-Type": "application/json"})


def _jwt_trust(options: StackOptions) -> JwtTrust:
    """The key, issuer and audience the authorizer gets; the dev key and defaults without a key."""
    if options.jwt_public_key_file is not None:
        try:
            key = options.jwt_public_key_file.read_text()
        except OSError as error:
            raise StartupError(
                f"cannot read --jwt-public-key {options.jwt_public_key_file}: {error.strerror}"
            ) from None
        return JwtTrust(key, None, options.jwt_issuer, options.jwt_audience)
    if options.jwks_url is not None:
        return JwtTrust(None, options.jwks_url, options.jwt_issuer, options.jwt_audience)
    dev_key = tokens.dev_private_key(options.state_dir)
    return JwtTrust(
        tokens.public_key_pem(dev_key),
        None,
        options.jwt_issuer or tokens.DEV_ISSUER,
        options.jwt_audience or tokens.DEV_AUDIENCE,
        dev_key,
    )


def _add_app_path(options: StackOptions) -> None:
    """Put the app's directory first on `sys.path` (worker processes inherit it), where
    Lambda finds the code archive's root; the app's module must be found there."""
    if options.app_path is not None:
        if not options.app_path.is_dir():
            raise StartupError(f"--app-path {options.app_path}: not a directory")
        sys.path.insert(0, str(options.app_path.resolve()))
    if options.app is not None and importlib.util.find_spec(options.app.split(".")[0]) is None:
        raise StartupError(f"--app {options.app}: no such module (try --app-path)")


def _address_in_use(error: OSError, host: str, port: int) -> StartupError:
    if error.errno == errno.EADDRINUSE:
        return StartupError(f"port {port} on {host} is already in use (try --port 0)")
    return StartupError(f"cannot listen on {host}:{port}: {error.strerror}")


class Stack:
    """One running local stack. `start`, then `close` once."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.api = Api(region=options.region, api_id=options.api_id)
        self.ready: dict = {}
        self._gateway = Gateway(self.api, options.limits)
        self._http: HttpServer | None = None
        self._database: dynamodb.MotoServer | dynamodb.DynamoDBLocal | None = None
        self._functions: dict[str, LambdaFunction] = {}
        self._mapping: EventSourceMapping | None = None
        self._schedules: list[Schedule] = []
        self._http_api: HttpApi | None = None
        self._faults = FaultControl() if options.faults else None
        self._ingress: Ingress | None = None
        self._event_bus: LocalEventBus | None = None
        self._batch_provider: BatchProvider | None = None

    async def start(self) -> dict:
        """Start everything and write the ready file; returns what it contains."""
        options = self.options
        _add_app_path(options)
        trust = _jwt_trust(options)
        try:
            cors_rules = CorsRules.from_env()
        except InvalidCorsRules as error:
            raise StartupError(f"{CORS_ENV}: {error}") from None
        if options.dynamodb == dynamodb.DYNAMODB_LOCAL and options.dynamodb_endpoint is None:
            try:
                dynamodb.require_dynamodb_local()
            except dynamodb.DynamoDBUnavailable as error:
                raise StartupError(str(error)) from None
        try:
            port = await self._gateway.bind(options.host, options.port)
        except OSError as error:
            raise _address_in_use(error, options.host, options.port) from None
        http_port = options.http_port
        if http_port is None:
            http_port = options.port + 1 if options.port else 0
        try:
            self._http = HttpServer(
                options.host,
                http_port,
                self._serve_page,
                intercept=self._intercept,
                api=self._serve_api,
            )
        except OSError as error:
            raise _address_in_use(error, options.host, http_port) from None

        endpoint = options.dynamodb_endpoint or await self._start_database()
        settings = config.Settings.from_env()
        tables = {
            "connections": settings.connections_table,
            "requests": settings.requests_table,
            "subscriptions": settings.subscriptions_table,
        }
        stream_arns = await asyncio.to_thread(
            dynamodb.create_tables, endpoint, options.region, tables
        )

        http_base = f"http://{options.host}:{self._http.port}"
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ.update(
            lambda_environment(options, settings, endpoint, http_base, trust, self.api.api_id)
        )
        self._batch_provider = BatchProvider(options.host)
        self._batch_provider.start()
        os.environ[demo.BATCH_PROVIDER_URL] = self._batch_provider.url
        os.environ[config.WEBSOCKET_URL] = f"ws://{options.host}:{port}/"
        if options.event_bus:
            moto_endpoint = endpoint if isinstance(self._database, dynamodb.MotoServer) else None
            self._event_bus = await asyncio.to_thread(
                LocalEventBus, options.host, options.region, options.event_bus, moto_endpoint
            )
            os.environ.update(self._event_bus.environment)
        account = self.api.account_id
        self._functions = self._make_functions()
        if options.invocations == PROCESSES or self._faults is not None:
            # Its libraries and the entry points load now, once, not at every cold start.
            entry_points = tuple(
                sorted({f.spec.handler.rpartition(".")[0] for f in self._functions.values()})
            )
            await asyncio.to_thread(zygote.shared, entry_points)
        wiring = wire(self._functions)

        self._ingress = Ingress(wiring.notifications, options.region, account)
        self._http_api = HttpApi(
            wiring.http,
            wiring.authorizer,
            options.region,
            account,
            cors_rules,
        )
        loop = asyncio.get_running_loop()
        self._http.start(GatewayConnections(self._gateway, loop))
        await self._gateway.start(
            Integrations(
                authorizer=wiring.authorizer,
                connect=wiring.connect,
                disconnect=wiring.disconnect,
                routes={DEFAULT_ROUTE: wiring.default_route},
            )
        )
        # The mapping takes what the deployed one takes, whatever the options say.
        mapping = dataclasses.replace(
            options.mapping, filters=(processor_records(options.region).pattern(),)
        )
        self._mapping = EventSourceMapping(
            dynamodb.client("dynamodbstreams", endpoint, options.region),
            stream_arns[settings.requests_table],
            wiring.stream,
            mapping,
            copies=self._faults.plan.copies if self._faults else None,
        )
        self._mapping.start()
        intervals = schedule_intervals(options)
        self._schedules = [
            Schedule(function, intervals[name], options.region, account)
            for name, function in wiring.scheduled.items()
        ]
        for schedule in self._schedules:
            schedule.start()

        self.ready = {
            "websocket_url": f"ws://{options.host}:{port}/",
            "management_url": http_base,
            "http_url": f"{http_base}/",
            "batch_provider_url": self._batch_provider.url,
            "pid": os.getpid(),
            "region": options.region,
            "api_id": self.api.api_id,
            "dynamodb": options.dynamodb,
            "dynamodb_endpoint": endpoint,
            "tables": tables,
            "sns_ingress_url": http_base + SNS_PATH,
            "eventbridge_ingress_url": http_base + EVENTBRIDGE_PATH,
        }
        if self._event_bus is not None:
            self.ready["event_bus"] = self._event_bus.name
            self.ready["events_endpoint"] = self._event_bus.endpoint_url
        if self._faults is not None:
            self._faults.attach(wiring.stream, self._mapping)
            self.ready["faults_url"] = f"{http_base}/_faults"
        if trust.dev_key is not None:
            self.ready["dev_token"] = tokens.mint(
                trust.dev_key,
                tokens.DEV_USER,
                tokens.DEV_TENANT,
                issuer=trust.issuer,
                audience=trust.audience,
            )
            self.ready["dev_key_file"] = str((options.state_dir / tokens.KEY_FILE).resolve())
            self.ready["jwt_issuer"] = trust.issuer
            self.ready["jwt_audience"] = trust.audience
        if options.ready_file is not None:
            write_ready_file(options.ready_file, self.ready)
        log.info("ready: %s", self.ready["websocket_url"])
        return self.ready

    async def _start_database(self) -> str:
        options = self.options
        try:
            self._database = await asyncio.to_thread(
                dynamodb.start, options.dynamodb, options.host, options.region
            )
        except dynamodb.DynamoDBUnavailable as error:
            raise StartupError(str(error)) from None
        return self._database.endpoint_url

    def _make_functions(self) -> dict[str, LambdaFunction]:
        """The catalog's functions, in worker processes or threads as the options say; with
        `--faults` the processor's workers take fault instructions."""
        options = self.options
        specs = function_specs(
            options.mapping,
            options.processor_timeout_s,
            options.processor_concurrency,
            options.function_concurrency,
        )
        account = self.api.account_id
        kind = IsolatedFunction if options.invocations == PROCESSES else LambdaFunction
        functions: dict[str, LambdaFunction] = {
            name: kind(spec, options.region, account) for name, spec in specs.items()
        }
        processor = catalog.the_one(Trigger.REQUESTS_STREAM).name
        if self._faults is not None:
            functions[processor] = IsolatedFunction(
                specs[processor],
                options.region,
                account,
                self._faults.plan.invocation_instructions,
            )
        return functions

    def _intercept(self, method: str, path: str, body: bytes) -> HttpResponse | None:
        """Requests answered before the management API: fault injection, then the ingress."""
        if self._faults is not None:
            answer = self._faults.intercept(method, path, body)
            if answer is not None:
                return answer
        return self._ingress.handle(method, path, body) if self._ingress else None

    def _serve_api(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> HttpResponse | None:
        return self._http_api.handle(method, target, headers, body) if self._http_api else None

    def _serve_page(self, method: str, path: str) -> HttpResponse:
        page = static_site.serve(method, path, self.ready) if self.ready else None
        return page or _not_found()

    async def close(self) -> bool:
        """Stop everything in reverse order; False if invocations outlived the grace period.

        Connections close first (each runs its `$disconnect`), then the poller
        and the schedule stop and the functions finish what they run; the
        database stops and the ready file goes in any case.
        """
        await self._gateway.close()
        clean = True
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self._stop_threads), self.options.shutdown_grace_s
            )
        except TimeoutError:
            log.error(
                "invocations still running after %.0f s; leaving them",
                self.options.shutdown_grace_s,
            )
            clean = False
        if self._database is not None:
            await asyncio.to_thread(self._database.stop)
        if self._event_bus is not None:
            await asyncio.to_thread(self._event_bus.stop)
        if self.options.ready_file is not None and self.ready:
            self.options.ready_file.unlink(missing_ok=True)
        return clean

    def _stop_threads(self) -> None:
        for schedule in self._schedules:
            schedule.stop()
        if self._mapping is not None:
            self._mapping.stop()
        for function in self._functions.values():
            function.close()
        zygote.stop_shared()
        if self._http is not None:
            self._http.close()
        if self._batch_provider is not None:
            self._batch_provider.stop()
