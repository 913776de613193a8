"""Every metric Streamer emits, declared once: name, unit, dimensions, meaning.

The runtime writes them as CloudWatch embedded metric format (EMF) in its logs;
the Pulumi components build the dashboard and the alarms from this same list,
and a test checks that both name only metrics declared here.

Dimensions are bounded sets only (CloudWatch bills every distinct set of
dimension values as a metric of its own, AWS-FACTS "Embedded metric format"):
service, stage, region and the few keys below whose values the code chooses
(route, outcome, reason, action, status). Tenant, user, connection and request
ids are never dimensions; per-tenant views come from Contributor Insights
rules over the JSON log lines instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: The CloudWatch namespace of every Streamer metric.
NAMESPACE = "Streamer"
#: The `service` dimension's value on every metric.
SERVICE = "streamer"
#: The dimensions every metric carries (each value is fixed per function).
BASE_DIMENSIONS = ("service", "stage", "region")


class Unit(StrEnum):
    COUNT = "Count"
    MILLISECONDS = "Milliseconds"


@dataclass(frozen=True)
class Metric:
    """One metric: its name, unit, the extra dimensions it is emitted with, and what it means."""

    name: str
    unit: Unit
    dimensions: tuple[str, ...]
    meaning: str


def _count(name: str, dimensions: tuple[str, ...], meaning: str) -> Metric:
    return Metric(name, Unit.COUNT, dimensions, meaning)


def _duration(name: str, dimensions: tuple[str, ...], meaning: str) -> Metric:
    return Metric(name, Unit.MILLISECONDS, dimensions, meaning)


CONNECTIONS_OPENED = _count("ConnectionsOpened", (), "WebSocket connections accepted")
CONNECTIONS_REFUSED = _count(
    "ConnectionsRefused", ("reason",), "handshakes refused, by reason (unauthorized, forbidden)"
)
CONNECTIONS_CLOSED = _count("ConnectionsClosed", (), "WebSocket connections ended")
MESSAGES = _count(
    "Messages", ("route", "outcome"), "client messages, by route and outcome (answer type or code)"
)
SYNC_DURATION = _duration("SyncDuration", ("action",), "a sync handler's run, in the router")
ACK_DURATION = _duration(
    "AcknowledgmentDuration", ("action",), "from a message's arrival to its acknowledgment"
)
PICKUP_DURATION = _duration(
    "PickupDuration", ("action",), "from an async request queued to its attempt started"
)
RUN_DURATION = _duration("RunDuration", ("action",), "one attempt of an async handler")
TOTAL_DURATION = _duration(
    "TotalDuration", ("action",), "from an async request queued to its final state"
)
#: TotalDuration again without the action dimension: a percentile cannot be taken across
#: the per-action metrics, and the p99 alarm must not need the app's action names.
ASYNC_TOTAL_DURATION = _duration(
    "AsyncTotalDuration", (), "TotalDuration of every async action together (p99 alarm)"
)
OUTCOMES = _count(
    "Outcomes", ("action", "status"), "requests ended, by final status (COMPLETED, FAILED, ...)"
)
RETRIES = _count("Retries", ("action",), "attempts scheduled again after a retryable failure")
PROGRESS_REPORTS = _count("ProgressReports", ("action",), "progress.report calls by handlers")
PROGRESS_SENT = _count(
    "ProgressMessagesSent", ("action",), "progress messages posted after coalescing"
)
DELIVERY_FAILURES = _count(
    "DeliveryFailures", ("reason",), "posts to @connections that failed (throttled, error)"
)
GONE_CONNECTIONS = _count("GoneConnections", (), "posts answered 410: the connection was gone")
SWEEPER_REDRIVES = _count(
    "SweeperRedrives", (), "stuck requests the sweeper put back, timed out or cancelled"
)
SWEEPER_FAILURES = _count("SweeperItemFailures", (), "due items the sweeper could not handle")
REGION_TAKEOVERS = _count(
    "RegionTakeovers", (), "stalled requests of a stopped region this region's sweeper took over"
)
EXTERNAL_JOB_POLLS = _count(
    "ExternalJobPolls", ("action", "outcome"), "polls of external jobs, by outcome"
)
CIRCUIT_OPEN = _count(
    "CircuitOpen", ("action",), "requests refused at once because the action's circuit is open"
)

#: Every metric, by name: the one list the runtime, the dashboard and the alarms read.
METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        CONNECTIONS_OPENED,
        CONNECTIONS_REFUSED,
        CONNECTIONS_CLOSED,
        MESSAGES,
        SYNC_DURATION,
        ACK_DURATION,
        PICKUP_DURATION,
        RUN_DURATION,
        TOTAL_DURATION,
        ASYNC_TOTAL_DURATION,
        OUTCOMES,
        RETRIES,
        PROGRESS_REPORTS,
        PROGRESS_SENT,
        DELIVERY_FAILURES,
        GONE_CONNECTIONS,
        SWEEPER_REDRIVES,
        SWEEPER_FAILURES,
        REGION_TAKEOVERS,
        EXTERNAL_JOB_POLLS,
        CIRCUIT_OPEN,
    )
}
