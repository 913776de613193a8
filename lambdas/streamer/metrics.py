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
durations kept as a list of values, split into more documents past the EMF
limits (`documents`). Serialising is Powertools for AWS Lambda's CloudWatch EMF
provider (`AmazonCloudWatchEMFProvider`, the class its `Metrics` delegates to),
given the whole metric set at once (`serialize_metric_set`): its per-point
`add_metric` and `add_dimension` checked names and units on every call and were
a third of a warm sync message's CPU (docs/benchmarks.md, section 8); the names,
units and dimensions are checked once instead, where they are declared
(`streamer.metric_names`, and tests/functional/test_observability.py runs every
declared metric through Powertools' own checks). It is imported at the first
flush, and without the package `__init__`, which imports Powertools' Logger and
Tracer too: measured in docs/operations.md ("Metrics").
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import threading
import types
from collections.abc import Mapping
from typing import Any

from streamer.metric_names import BASE_DIMENSIONS, NAMESPACE, SERVICE, Metric, Unit

log = logging.getLogger(__name__)

#: The EMF specification's limits on one document (`documents`).
MAX_METRICS_PER_DOCUMENT = 100
MAX_VALUES_PER_METRIC = 100
#: Dimension values -> metric name -> (unit, values).
_Points = dict[tuple[tuple[str, str], ...], dict[str, tuple[Unit, list[float]]]]

_lock = threading.Lock()
_points: _Points = {}
_base: dict[str, str] = {"service": SERVICE, "stage": "unknown", "region": "unknown"}
_provider_class: Any = None
#: Serialises flushes through the one provider (`_provider`).
_provider_lock = threading.Lock()
_shared_provider: Any = None


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
        with _provider_lock:
            provider = _provider()
            lines = []
            for key, group in points.items():
                dimensions = {**{name: _base[name] for name in BASE_DIMENSIONS}, **dict(key)}
                for metric_set in documents(group):
                    document = provider.serialize_metric_set(
                        metrics=metric_set, dimensions=dimensions, metadata={}
                    )
                    lines.append(json.dumps(document, separators=(",", ":")))
            # One write for the invocation's documents, one per line as CloudWatch Logs reads
            # them.
            if lines:
                print("\n".join(lines))
    except Exception:
        with _provider_lock:
            _discard_provider()
        log.exception("metrics not written", extra={"fields": {"dropped": _names(points)}})


def documents(group: dict[str, tuple[Unit, list[float]]]) -> list[dict[str, dict[str, Any]]]:
    """One dimension set's points as the metric sets of its EMF documents.

    A document holds at most `MAX_METRICS_PER_DOCUMENT` metrics and each metric at most
    `MAX_VALUES_PER_METRIC` values (EMF specification, docs.aws.amazon.com/AmazonCloudWatch/
    latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html: "up to 100
    values" per metric array, "up to 100 metrics" per directive); more make more documents.
    The sets are in the form Powertools' `serialize_metric_set` takes.
    """
    names = list(group)
    longest = max((len(values) for _, values in group.values()), default=0)
    sets = []
    for first_name in range(0, len(names), MAX_METRICS_PER_DOCUMENT):
        chunk = names[first_name : first_name + MAX_METRICS_PER_DOCUMENT]
        for first_value in range(0, longest, MAX_VALUES_PER_METRIC):
            metric_set = {}
            for name in chunk:
                unit, values = group[name]
                part = values[first_value : first_value + MAX_VALUES_PER_METRIC]
                if part:
                    metric_set[name] = {"Unit": unit.value, "Value": part}
            if metric_set:
                sets.append(metric_set)
    return sets


def _provider() -> Any:
    """The process's one provider, made at the first flush and reused by every flush.

    `serialize_metric_set` reads only what it is given and the namespace; making a
    provider per document cost more than the document (its constructor lists every unit
    and resolution).
    """
    global _shared_provider
    if _shared_provider is None:
        _shared_provider = _emf_provider()(namespace=NAMESPACE)
    return _shared_provider


def _discard_provider() -> None:
    """Drop a provider a failed flush may have left half-filled."""
    global _shared_provider
    _shared_provider = None


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
