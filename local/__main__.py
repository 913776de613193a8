"""`python -m local`: run the local stack. `python -m local token`: mint a dev token.

Exit codes: 0 after SIGINT or SIGTERM, 2 when the stack cannot start (port
taken, key file missing, Java absent) with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from local import dynamodb, ingress, logs, multiregion, tokens
from local.event_source_mapping import MappingConfig
from local.gateway import Limits
from local.stack import INVOCATION_MODES, PROCESSES, Stack, StackOptions, StartupError
from local.streams import BatchPolicy
from local.wiring import DEFAULT_FUNCTION_CONCURRENCY, DEFAULT_PROCESSOR_CONCURRENCY

PROG = "python -m local"


def _stack_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run Streamer on this machine: API Gateway, Lambda and DynamoDB played "
        "locally around the unchanged entry points. `python -m local token --help` mints tokens.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="WebSocket port; 0 picks a free one")
    parser.add_argument(
        "--http-port",
        type=int,
        help="port of @connections and the page (default: --port + 1, or free with --port 0)",
    )
    parser.add_argument("--ready-file", type=Path, help="write the URLs here as JSON when ready")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--jwt-public-key", type=Path, metavar="PEM_FILE")
    keys.add_argument("--jwks-url", metavar="URL")
    parser.add_argument("--jwt-issuer", metavar="ISS")
    parser.add_argument("--jwt-audience", metavar="AUD")
    parser.add_argument("--dynamodb", choices=dynamodb.ENGINES, default=dynamodb.MOTO)
    parser.add_argument("--app", metavar="MODULE", help="application module (default: the demo)")
    parser.add_argument(
        "--app-path",
        type=Path,
        metavar="DIR",
        help="directory of an app kept outside lambdas/, searched first for --app",
    )
    parser.add_argument(
        "--dynamodb-endpoint",
        metavar="URL",
        help="use this running DynamoDB (its missing tables are created) instead of starting one",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--region", default=os.environ.get("AWS_REGION") or "us-east-1")
    where.add_argument(
        "--regions",
        metavar="R1,R2[,...]",
        help="run one stack per region over tables replicated between them (global tables)",
    )
    regions = parser.add_argument_group("with --regions")
    regions.add_argument(
        "--replication-lag",
        type=float,
        metavar="S",
        help="seconds before a write reaches the other regions "
        f"(default: {multiregion.DEFAULT_REPLICATION_LAG_S:g})",
    )
    regions.add_argument(
        "--heartbeat-stale",
        type=float,
        metavar="S",
        help="seconds after which a region's sweeper heartbeat is stale "
        f"(default: {multiregion.HEARTBEAT_STALE_SWEEPS} sweep intervals)",
    )
    regions.add_argument(
        "--takeover-grace",
        type=float,
        metavar="S",
        help="seconds past a request's due time before another region takes it over "
        f"(default: {multiregion.DEFAULT_TAKEOVER_GRACE_S:g})",
    )
    limits = parser.add_argument_group("API Gateway limits")
    limits.add_argument("--idle-timeout", type=float, default=Limits.idle_timeout_s, metavar="S")
    limits.add_argument("--max-duration", type=float, default=Limits.max_duration_s, metavar="S")
    stream = parser.add_argument_group("event source mapping")
    stream.add_argument(
        "--poll-interval", type=float, default=MappingConfig.poll_interval_s, metavar="S"
    )
    stream.add_argument("--batch-size", type=int, default=BatchPolicy().batch_size)
    stream.add_argument(
        "--batch-window", type=float, default=BatchPolicy().maximum_batching_window_s, metavar="S"
    )
    stream.add_argument(
        "--parallelization-factor", type=int, default=MappingConfig.parallelization_factor
    )
    stream.add_argument("--max-retries", type=int, default=BatchPolicy().maximum_retry_attempts)
    stream.add_argument(
        "--max-record-age",
        type=float,
        default=BatchPolicy().maximum_record_age_s,
        metavar="S",
        help="records older than this are discarded, not sent (default: %(default)s)",
    )
    stream.add_argument(
        "--bisect",
        action=argparse.BooleanOptionalAction,
        default=BatchPolicy().bisect_batch_on_function_error,
        help="split a batch in two when the function fails (default: %(default)s)",
    )
    parser.add_argument("--sweep-interval", type=float, default=5.0, metavar="S")
    parser.add_argument("--poll-jobs-interval", type=float, default=2.0, metavar="S")
    parser.add_argument(
        "--processor-timeout",
        type=float,
        default=None,
        metavar="S",
        help="the stream processor's timeout, which its leases follow (default: the deployed "
        "one, 900)",
    )
    parser.add_argument(
        "--processor-concurrency",
        type=int,
        default=DEFAULT_PROCESSOR_CONCURRENCY,
        metavar="N",
        help="the stream processor's concurrency limit (its reserved concurrency): invocations "
        "past it are throttled and the mapping retries them (default: %(default)s)",
    )
    parser.add_argument(
        "--function-concurrency",
        type=int,
        default=DEFAULT_FUNCTION_CONCURRENCY,
        metavar="N",
        help="how many invocations of each other function run at once, each in its own "
        "execution environment; more wait for one (default: %(default)s)",
    )
    parser.add_argument(
        "--invocations",
        choices=INVOCATION_MODES,
        default=PROCESSES,
        help="run each execution environment in a worker process, as Lambda does, or every "
        "invocation in a thread of the stack's process (default: %(default)s)",
    )
    parser.add_argument(
        "--faults",
        action="store_true",
        help="serve the fault-injection API at /_faults on the HTTP port (tests only)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=10.0,
        metavar="S",
        help="how long invocations may run on after a stop signal",
    )
    parser.add_argument(
        "--event-bus",
        default=os.environ.get("STREAMER_EVENT_BUS") or None,
        metavar="NAME",
        help="publish request lifecycle events to this EventBridge bus (created on moto)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def _token_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} token", description="Print a JWT signed with the local stack's dev key."
    )
    parser.add_argument("--sub", required=True, help="user id")
    parser.add_argument("--tenant", required=True, help="tenant id")
    parser.add_argument("--ttl", type=int, default=tokens.DEV_TOKEN_TTL_S, metavar="SECONDS")
    parser.add_argument("--permissions", help="comma-separated permissions claim")
    return parser


def _options(args: argparse.Namespace) -> StackOptions:
    return StackOptions(
        host=args.host,
        port=args.port,
        http_port=args.http_port,
        ready_file=args.ready_file,
        jwt_public_key_file=args.jwt_public_key,
        jwks_url=args.jwks_url,
        jwt_issuer=args.jwt_issuer,
        jwt_audience=args.jwt_audience,
        dynamodb=args.dynamodb,
        app=args.app,
        app_path=args.app_path,
        region=args.region,
        limits=Limits(idle_timeout_s=args.idle_timeout, max_duration_s=args.max_duration),
        mapping=MappingConfig(
            policy=BatchPolicy(
                batch_size=args.batch_size,
                maximum_batching_window_s=args.batch_window,
                maximum_retry_attempts=args.max_retries,
                maximum_record_age_s=args.max_record_age,
                bisect_batch_on_function_error=args.bisect,
            ),
            parallelization_factor=args.parallelization_factor,
            poll_interval_s=args.poll_interval,
        ),
        sweep_interval_s=args.sweep_interval,
        poll_jobs_interval_s=args.poll_jobs_interval,
        shutdown_grace_s=args.shutdown_grace,
        processor_timeout_s=args.processor_timeout,
        processor_concurrency=args.processor_concurrency,
        function_concurrency=args.function_concurrency,
        invocations=args.invocations,
        faults=args.faults,
        event_bus=args.event_bus,
        dynamodb_endpoint=args.dynamodb_endpoint,
    )


def _regions_options(args: argparse.Namespace) -> multiregion.RegionsOptions:
    lag = args.replication_lag
    grace = args.takeover_grace
    return multiregion.RegionsOptions(
        stack=_options(args),
        regions=tuple(r.strip() for r in args.regions.split(",") if r.strip()),
        replication_lag_s=multiregion.DEFAULT_REPLICATION_LAG_S if lag is None else lag,
        heartbeat_stale_s=args.heartbeat_stale,
        takeover_grace_s=multiregion.DEFAULT_TAKEOVER_GRACE_S if grace is None else grace,
        log_level=args.log_level,
    )


def _announce(ready: dict) -> None:
    lines = [
        "Streamer local stack is ready.",
        f"  WebSocket: {ready['websocket_url']}",
        f"  HTTP:      {ready['http_url']}",
    ]
    if "dev_token" in ready:
        lines += [
            f"  Dev token: {ready['dev_token']}",
            "Call it:",
            f'  python -m client call echo --payload \'{{"hello": "world"}}\' '
            f"--url {ready['websocket_url']} --token {ready['dev_token']}",
        ]
    lines.append("Stop with Ctrl-C.")
    print("\n".join(lines), flush=True)


def _announce_regions(ready: dict) -> None:
    lines = [f"Streamer local stack is ready in {len(ready['regions'])} regions."]
    for region, urls in ready["regions"].items():
        lines.append(f"  {region}: WebSocket {urls['websocket_url']}  HTTP {urls['http_url']}")
    lines.append(f"  Replication lag: {ready['replication_lag_s']:g} s")
    if "control_url" in ready:
        lines.append(f"  Regions' fault API: {ready['control_url']}")
    if "dev_token" in ready:
        lines.append(f"  Dev token (every region): {ready['dev_token']}")
    lines.append("Stop with Ctrl-C.")
    print("\n".join(lines), flush=True)


async def _serve(options: StackOptions) -> None:
    """Run until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    stack = Stack(options)
    try:
        _announce(await stack.start())
        await stop.wait()
    finally:
        if not await stack.close():
            # Threads still run handlers that cannot be stopped, and leaving
            # the loop would wait for them; Lambda would end them too.
            logging.shutdown()
            sys.stdout.flush()
            os._exit(0)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    if argv[:1] == ["publish"]:
        return ingress.publish_main(argv[1:])
    if argv[:1] == ["token"]:
        args = _token_parser().parse_args(argv[1:])
        permissions = args.permissions.split(",") if args.permissions else None
        key = tokens.dev_private_key()
        print(tokens.mint(key, args.sub, args.tenant, args.ttl, permissions))
        return 0
    parser = _stack_parser()
    args = parser.parse_args(argv)
    if args.app_path is not None and args.app is None:
        parser.error("--app-path needs --app MODULE")
    if args.function_concurrency < 1:
        parser.error("--function-concurrency must be at least 1")
    if args.regions is None:
        given = [
            flag
            for flag, value in (
                ("--replication-lag", args.replication_lag),
                ("--heartbeat-stale", args.heartbeat_stale),
                ("--takeover-grace", args.takeover_grace),
            )
            if value is not None
        ]
        if given:
            parser.error(f"{given[0]} needs --regions")
    elif args.dynamodb_endpoint is not None:
        parser.error("--dynamodb-endpoint: with --regions each region starts its own DynamoDB")
    for flag, value in (
        ("--replication-lag", args.replication_lag),
        ("--heartbeat-stale", args.heartbeat_stale),
        ("--takeover-grace", args.takeover_grace),
    ):
        if value is not None and value < 0:
            parser.error(f"{flag} must be at least 0")
    logs.configure(args.log_level)
    try:
        if args.regions is not None:
            multiregion.serve(_regions_options(args), _announce_regions)
        else:
            asyncio.run(_serve(_options(args)))
    except StartupError as error:
        return _fail(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
