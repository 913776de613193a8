"""One CloudWatch dashboard per region, generated from `streamer.metric_names`.

Sections, top to bottom: golden signals (messages by route and outcome, sync duration,
function errors), the async pipeline (acknowledgment, pickup, run and total durations,
outcomes, retries, the stream's iterator age, the dead-letter queue, the sweeper),
connections and delivery, throttles, cost drivers (DynamoDB capacity, API Gateway
messages), the per-tenant Contributor Insights rules, and the circuit breaker.
Streamer's metrics with dimensions of their own (action, route, ...) are drawn with a
SEARCH over every value of them, so the dashboard never lists an app's actions.
Body syntax: AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.observability import base_dimensions, search
from streamer import metric_names as m
from streamer.metric_names import NAMESPACE, Metric

PERIOD_S = 60
#: Graph widgets per row (the grid is 24 units wide).
WIDTH, HEIGHT, COLUMNS = 8, 6, 3

Line = list[Any]


@dataclass(frozen=True)
class Where:
    """What the region's widgets point at: names and ids known once resources exist."""

    region: str
    stage: str
    #: Function names by catalog name.
    functions: Mapping[str, str]
    processor: str
    dead_letter_queue: str
    api_id: str
    #: Table names by logical name.
    tables: Mapping[str, str]
    #: Contributor Insights rule names by `insights.CONTRIBUTIONS` key.
    rules: Mapping[str, str]


def declared(metric: Metric, statistic: str, where: Where) -> list[Line]:
    """`metric`'s lines: itself when it has only the base dimensions, else a SEARCH."""
    base = base_dimensions(where.stage, where.region)
    if not metric.dimensions:
        dimensions = [part for key, value in base.items() for part in (key, value)]
        return [[NAMESPACE, metric.name, *dimensions, {"stat": statistic}]]
    expression = search(metric, statistic, base, PERIOD_S)
    # An expression's id must start with a lower-case letter and be unique in its graph.
    identifier = f"{metric.name.lower()}{statistic.lower()}".replace(".", "")
    return [[{"expression": expression, "id": identifier, "label": statistic}]]


def per_function(metric_name: str, where: Where, statistic: str = "Sum") -> list[Line]:
    """One AWS/Lambda line per function of the region."""
    return [
        ["AWS/Lambda", metric_name, "FunctionName", name, {"stat": statistic, "label": function}]
        for function, name in where.functions.items()
    ]


def sections(where: Where) -> list[tuple[str, list[tuple[str, list[Line]]]]]:
    """Every section: its title and its graphs (title, lines)."""
    api = ["ApiId", where.api_id, "Stage", where.stage]
    tables = where.tables.items()
    return [
        (
            "Golden signals",
            [
                ("Messages by route and outcome", declared(m.MESSAGES, "Sum", where)),
                (
                    "Sync duration by action (p50, p99)",
                    declared(m.SYNC_DURATION, "p50", where)
                    + declared(m.SYNC_DURATION, "p99", where),
                ),
                ("Function errors", per_function("Errors", where)),
            ],
        ),
        (
            "Async pipeline",
            [
                ("Acknowledgment by action (p99)", declared(m.ACK_DURATION, "p99", where)),
                ("Pickup: queued to started (p99)", declared(m.PICKUP_DURATION, "p99", where)),
                ("Run: one attempt (p99)", declared(m.RUN_DURATION, "p99", where)),
                (
                    "Total: queued to ended (p99)",
                    declared(m.TOTAL_DURATION, "p99", where)
                    + declared(m.ASYNC_TOTAL_DURATION, "p99", where),
                ),
                ("Outcomes by status", declared(m.OUTCOMES, "Sum", where)),
                ("Retries", declared(m.RETRIES, "Sum", where)),
                (
                    "Stream iterator age (processor)",
                    [
                        [
                            "AWS/Lambda",
                            "IteratorAge",
                            "FunctionName",
                            where.processor,
                            {"stat": "Maximum"},
                        ]
                    ],
                ),
                (
                    "Dead letters",
                    [
                        [
                            "AWS/SQS",
                            "ApproximateNumberOfMessagesVisible",
                            "QueueName",
                            where.dead_letter_queue,
                            {"stat": "Maximum"},
                        ],
                    ],
                ),
                (
                    "Sweeper: re-drives, takeovers of a stopped region's requests, failures",
                    declared(m.SWEEPER_REDRIVES, "Sum", where)
                    + declared(m.REGION_TAKEOVERS, "Sum", where)
                    + declared(m.SWEEPER_FAILURES, "Sum", where),
                ),
                (
                    "Progress: reports vs messages sent",
                    declared(m.PROGRESS_REPORTS, "Sum", where)
                    + declared(m.PROGRESS_SENT, "Sum", where),
                ),
                ("External job polls", declared(m.EXTERNAL_JOB_POLLS, "Sum", where)),
            ],
        ),
        (
            "Connections",
            [
                (
                    "Opened and closed",
                    declared(m.CONNECTIONS_OPENED, "Sum", where)
                    + declared(m.CONNECTIONS_CLOSED, "Sum", where),
                ),
                ("Refused by reason", declared(m.CONNECTIONS_REFUSED, "Sum", where)),
                (
                    "Delivery failures and gone connections",
                    declared(m.DELIVERY_FAILURES, "Sum", where)
                    + declared(m.GONE_CONNECTIONS, "Sum", where),
                ),
            ],
        ),
        (
            "Throttles",
            [
                ("Lambda throttles", per_function("Throttles", where)),
                (
                    # ClientError: 4XX answered before the integration runs, where a
                    # throttled message's 429 is answered; dimensions ApiId and Stage
                    # (apigateway/latest/developerguide/apigateway-websocket-api-logging.html).
                    "API Gateway client and execution errors",
                    [
                        ["AWS/ApiGateway", "ClientError", *api, {"stat": "Sum"}],
                        ["AWS/ApiGateway", "ExecutionError", *api, {"stat": "Sum"}],
                    ],
                ),
                (
                    "Lambda concurrency",
                    per_function("ConcurrentExecutions", where, "Maximum"),
                ),
            ],
        ),
        (
            "Cost drivers",
            [
                (
                    "DynamoDB consumed write capacity",
                    [
                        [
                            "AWS/DynamoDB",
                            "ConsumedWriteCapacityUnits",
                            "TableName",
                            name,
                            {"stat": "Sum", "label": logical},
                        ]
                        for logical, name in tables
                    ],
                ),
                (
                    "DynamoDB consumed read capacity",
                    [
                        [
                            "AWS/DynamoDB",
                            "ConsumedReadCapacityUnits",
                            "TableName",
                            name,
                            {"stat": "Sum", "label": logical},
                        ]
                        for logical, name in tables
                    ],
                ),
                (
                    "API Gateway messages and connections",
                    [
                        ["AWS/ApiGateway", "MessageCount", *api, {"stat": "Sum"}],
                        ["AWS/ApiGateway", "ConnectCount", *api, {"stat": "Sum"}],
                    ],
                ),
            ],
        ),
        ("Circuit breaker", [("Refused: circuit open", declared(m.CIRCUIT_OPEN, "Sum", where))]),
    ]


def _graph(title: str, lines: list[Line], where: Where) -> dict[str, Any]:
    return {
        "type": "metric",
        "properties": {
            "title": title,
            "region": where.region,
            "period": PERIOD_S,
            "view": "timeSeries",
            "stacked": False,
            "metrics": lines,
        },
    }


def _top_contributors(title: str, rule_name: str, where: Where) -> dict[str, Any]:
    return {
        "type": "metric",
        "properties": {
            "title": title,
            "region": where.region,
            "period": PERIOD_S,
            "view": "timeSeries",
            "insightRule": {"maxContributorCount": 10, "orderBy": "Sum", "ruleName": rule_name},
            "legend": {"position": "right"},
        },
    }


def dashboard_body(where: Where) -> dict[str, Any]:
    """The dashboard, laid out row by row: a heading per section, its graphs below."""
    rows: list[tuple[str, list[dict[str, Any]]]] = [
        (title, [_graph(graph, lines, where) for graph, lines in graphs])
        for title, graphs in sections(where)
    ]
    rows.insert(
        -1,
        (
            "Per tenant (Contributor Insights, top 10)",
            [
                _top_contributors(key.replace("-", " ").capitalize(), rule, where)
                for key, rule in where.rules.items()
            ],
        ),
    )
    widgets, y = [], 0
    for title, graphs in rows:
        widgets.append(
            {
                "type": "text",
                "x": 0,
                "y": y,
                "width": 24,
                "height": 1,
                "properties": {"markdown": f"## {title}"},
            }
        )
        y += 1
        for index, widget in enumerate(graphs):
            column, row = index % COLUMNS, index // COLUMNS
            widgets.append(
                {
                    **widget,
                    "x": column * WIDTH,
                    "y": y + row * HEIGHT,
                    "width": WIDTH,
                    "height": HEIGHT,
                }
            )
        y += -(-len(graphs) // COLUMNS) * HEIGHT
    return {"start": "-PT3H", "periodOverride": "inherit", "widgets": widgets}


@dataclass
class RegionDashboardArgs:
    """The dashboard's name and what its widgets point at (outputs resolved together)."""

    dashboard_name: str
    region: str
    stage: str
    functions: Mapping[str, pulumi.Input[str]]
    processor: pulumi.Input[str]
    dead_letter_queue: pulumi.Input[str]
    api_id: pulumi.Input[str]
    tables: Mapping[str, pulumi.Input[str]]
    rules: Mapping[str, str]


def region_dashboard(
    name: str, args: RegionDashboardArgs, opts: pulumi.ResourceOptions
) -> aws.cloudwatch.Dashboard:
    """The region's dashboard; dashboards are global in an account, so the name holds the
    region."""
    resolved = pulumi.Output.all(
        functions=pulumi.Output.all(**args.functions),
        tables=pulumi.Output.all(**args.tables),
        processor=args.processor,
        dead_letter_queue=args.dead_letter_queue,
        api_id=args.api_id,
    )
    return aws.cloudwatch.Dashboard(
        name,
        dashboard_name=args.dashboard_name,
        dashboard_body=resolved.apply(
            lambda v: json.dumps(
                dashboard_body(
                    Where(
                        region=args.region,
                        stage=args.stage,
                        rules=args.rules,
                        functions=v["functions"],
                        tables=v["tables"],
                        processor=v["processor"],
                        dead_letter_queue=v["dead_letter_queue"],
                        api_id=v["api_id"],
                    )
                ),
                sort_keys=True,
            )
        ),
        opts=opts,
    )
