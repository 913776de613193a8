"""Where Streamer's own metrics are found: the one place the dashboard and the alarms
turn `streamer.metric_names` into CloudWatch metric references.

Every metric is in the `NAMESPACE` namespace with `BASE_DIMENSIONS` (service, stage,
region) plus its own bounded dimensions. The base dimensions' values are fixed per
function: the service, the stack's API stage, and the function's region.
"""

from __future__ import annotations

from streamer.metric_names import BASE_DIMENSIONS, NAMESPACE, SERVICE, Metric


def base_dimensions(stage: str, region: str) -> dict[str, str]:
    """The values of `BASE_DIMENSIONS` for one stage in one region."""
    return {"service": SERVICE, "stage": stage, "region": region}


def dimension_keys(metric: Metric) -> tuple[str, ...]:
    """Every dimension `metric` is emitted with: the base ones, then its own."""
    return (*BASE_DIMENSIONS, *metric.dimensions)


def search(metric: Metric, statistic: str, base: dict[str, str], period_s: int) -> str:
    """A metric math SEARCH for every series of `metric` in this stage and region.

    The schema `{namespace, keys...}` matches only metrics with exactly the metric's
    dimensions, so one line shows every value of its own dimensions (each action, each
    outcome) without the dashboard having to know them
    (AmazonCloudWatch/latest/monitoring/search-expression-syntax.html).
    """
    schema = ",".join((NAMESPACE, *sorted(dimension_keys(metric))))
    filters = " ".join(f'{key}="{value}"' for key, value in base.items())
    return (
        f"SEARCH('{{{schema}}} MetricName=\"{metric.name}\" {filters}', '{statistic}', {period_s})"
    )
