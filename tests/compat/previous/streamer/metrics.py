"""Metrics as CloudWatch embedded metric format (EMF), written with the logs: no API call.

The rest of the runtime records through this seam, with a metric declared in
`streamer.metric_names` and exactly its declared dimensions:

    metrics.count(metric_names.MESSAGES, route="$default", outcome="response")
    metrics.duration(metric_names.RUN_DURATION, elapsed_ms, action=item.action)

Recorded points wait in a process buffer until `flush`, which each entry point
calls once, at the end of its invocation (`streamer.invocation`). The buffer
takes points from any thread under its lock, so the processor's worker threads
and a progress reporter's thread, all joined before their invocation returns,
land in that invocation's documents. Lambda runs one invocation at a time per
process; where one process runs several at once (the local stack), a flush
writes every point recorded so far, so each point is still written exactly once.

Points with the same dimension values make one EMF document (EMF gives every
metric of a document the same dimension values); counts of one metric are summed,
durations kept as a list of values. Serialising is Powertools for AWS Lambda's
CloudWatch EMF provider (`AmazonCloudWatchEMFProvider`, the class its `Metrics`
delegates to), which validates names, units and the EMF limits (100 metrics and
100 values per document: it writes a document and starts another when one is
full; 30 dimensions). It is imported at the first flush, and without the package
`__init__`, which imports Powertools' Logger and Tracer too: measured in
docs/operations.md ("Metrics").
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import types
from collections.abc import Mapping
from typing import Any

from streamer.metric_names import BASE_DIMENSIONS, NAMESPACE, SERVICE, Metric, Unit

log = logging.getLogger(__name__)

#: Dimension values -> metric name -> (unit, values).
_Points = dict[tuple[tuple[str, str], ...], dict[str, tuple[Unit, list[float]]]]

_lock = threading.Lock()
_points: _Points = {}
_base: dict[str, str] = {"service": SERVICE, "stage": "unknown", "region": "unknown"}
_provider_class: Any = None


def configure(stage: str, region: str) -> None:
    """Set the base dimensions' values for this process (`streamer.runtime`)."""
    _base.update(service=SERVICE, stage=stage, region=region)


def count(metric: Metric, value: int = 1, **dimensions: str) -> None:
    """Add `value` to a count metric, under its declared dimensions."""
    _record(metric, float(value), dimensions)


def duration(metric: Metric, milliseconds: float, **dimensions: str) -> None:
    """Record one duration of a milliseconds metric, under its declared dimensions."""
    _record(metric, float(milliseconds), dimensions)


def _record(metric: Metric, value: float, dimensions: Mapping[str, str]) -> None:
    if set(dimensions) != set(metric.dimensions):
        raise ValueError(
            f"{metric.name} takes dimensions {sorted(metric.dimensions)}, got {sorted(dimensions)}"
        )
    key = tuple(sorted((name, str(dimensions[name])) for name in metric.dimensions))
    with _lock:
        group = _points.setdefault(key, {})
        unit, values = group.setdefault(metric.name, (metric.unit, []))
        if unit is Unit.COUNT and values:
            values[0] += value
        else:
            values.append(value)


def pending() -> _Points:
    """Take the points recorded since the last flush (the buffer is left empty)."""
    global _points
    with _lock:
        taken, _points = _points, {}
    return taken


def flush() -> None:
    """Write the points recorded since the last flush as EMF documents on stdout.

    Never raises: an invocation's answer matters more than its metrics; a
    failure is logged (ERROR) with what was dropped.
    """
    points = pending()
    if not points:
        return
    try:
        provider_class = _emf_provider()
        for key, group in points.items():
            provider = provider_class(namespace=NAMESPACE)
            for name, value in (*((n, _base[n]) for n in BASE_DIMENSIONS), *key):
                provider.add_dimension(name, value)
            for metric_name, (unit, values) in group.items():
                for value in values:
                    provider.add_metric(name=metric_name, unit=unit.value, value=value)
            provider.flush_metrics()
    except Exception:
        log.exception("metrics not written", extra={"fields": {"dropped": _names(points)}})


def _names(points: _Points) -> list[str]:
    return sorted({name for group in points.values() for name in group})


def _emf_provider() -> Any:
    """Powertools' `AmazonCloudWatchEMFProvider`, imported once.

    Importing `aws_lambda_powertools.metrics` runs the package's `__init__`,
    which imports its Logger and Tracer as well (about 2.5 times the CPU time
    of the provider alone, docs/operations.md). When nothing has imported the
    package yet, a bare package module stands in while the provider's modules
    load, and is taken out again, so that code importing `aws_lambda_powertools`
    later (an app's handler) imports it whole, as if for the first time.
    """
    global _provider_class
    if _provider_class is not None:
        return _provider_class
    package = "aws_lambda_powertools"
    stand_in = None
    if package not in sys.modules:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.submodule_search_locations is None:
            raise ModuleNotFoundError(f"No module named {package!r}", name=package)
        stand_in = types.ModuleType(package)
        stand_in.__path__ = list(spec.submodule_search_locations)
        stand_in.__spec__ = spec
        sys.modules[package] = stand_in
    try:
        from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
            AmazonCloudWatchEMFProvider,
        )
    finally:
        if stand_in is not None:
            for name in [n for n in sys.modules if n == package or n.startswith(f"{package}.")]:
                del sys.modules[name]
    _provider_class = AmazonCloudWatchEMFProvider
    return _provider_class
