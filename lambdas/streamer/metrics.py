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

Points with the same dimension values make one metric directive (EMF gives every
metric of a directive the same dimension values); counts of one metric are summed,
durations kept as a list of values, split into more directives past the EMF
limits (`documents`). Directives whose values do not collide share a document
(`_packed`): a message's count and its handler's duration are one line. A
one-directive document is written in the layout Powertools for AWS Lambda's
CloudWatch EMF provider gives it (`serialize_metric_set` of
`AmazonCloudWatchEMFProvider`): tests/functional/test_observability.py checks every
declared metric through Powertools' own checks and that the documents written here
(`emf_document`) equal Powertools' for the same points. Going through Powertools cost
10 to 12 % of a warm sync message's CPU (docs/benchmarks.md, section 8), and its
import a cold start's first flush (docs/operations.md, "Metrics"); a directive,
fixed by its dimension and metric names, is encoded once and kept (`_directive`),
so a flush encodes only the root's values.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
import time
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
#: `_base` as the first (name, value) pairs of every document's dimensions.
_base_items: tuple[tuple[str, str], ...] = tuple((name, _base[name]) for name in BASE_DIMENSIONS)
#: A metric's name -> its declared dimensions: as declared, as a set, in a document key's order.
_declared: dict[str, tuple[tuple[str, ...], frozenset[str], tuple[str, ...]]] = {}
#: What `json.dumps(document, separators=(",", ":"))` wrote before, without a new encoder
#: per call.
_encoder = json.JSONEncoder(separators=(",", ":"))


def configure(stage: str, region: str) -> None:
    """Set the base dimensions' values for this process (`streamer.runtime`)."""
    global _base_items
    _base.update(service=SERVICE, stage=stage, region=region)
    _base_items = tuple((name, _base[name]) for name in BASE_DIMENSIONS)


def count(metric: Metric, value: int = 1, **dimensions: str) -> None:
    """Add `value` to a count metric, under its declared dimensions."""
    _record(metric, float(value), dimensions)


def duration(metric: Metric, milliseconds: float, **dimensions: str) -> None:
    """Record one duration of a milliseconds metric, under its declared dimensions."""
    _record(metric, float(milliseconds), dimensions)


#: A point's key by its metric's name and declared dimensions and the dimensions given, in
#: the caller's order: what `_key` made of them, checked once.
_keys: dict[tuple, tuple[tuple[str, str], ...]] = {}
#: Keys kept at most (dimension values are bounded: few keys a process).
MAX_KEYS = 4096


def _record(metric: Metric, value: float, dimensions: Mapping[str, str]) -> None:
    try:
        given = (metric.name, metric.dimensions, *dimensions.items())
        key = _keys.get(given)
    except TypeError:  # a value that is not hashable: `_key` writes it as text
        given, key = None, None
    if key is None:
        key = _key(metric, dimensions)
        # Kept for text values only: 1, 1.0 and True are equal keys with other texts.
        if given is not None and all(type(v) is str for v in dimensions.values()):
            if len(_keys) >= MAX_KEYS:
                _keys.clear()
            _keys[given] = key
    with _lock:
        group = _points.setdefault(key, {})
        unit, values = group.setdefault(metric.name, (metric.unit, []))
        if unit is Unit.COUNT and values:
            values[0] += value
        else:
            values.append(value)


def _key(metric: Metric, dimensions: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """A point's key: its declared dimensions' values, by name; ValueError for others."""
    declared = _declared.get(metric.name)
    if declared is None or declared[0] != metric.dimensions:
        names = frozenset(metric.dimensions)
        declared = _declared[metric.name] = (metric.dimensions, names, tuple(sorted(names)))
    if dimensions.keys() != declared[1]:
        raise ValueError(
            f"{metric.name} takes dimensions {sorted(metric.dimensions)}, got {sorted(dimensions)}"
        )
    return tuple([(name, str(dimensions[name])) for name in declared[2]])


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
        lines = _lines(points, int(time.time() * 1000))
        # One write for the invocation's documents, one per line as CloudWatch Logs reads
        # them (a `print` is two writes where stdout is unbuffered, as on Lambda).
        sys.stdout.write("\n".join(lines) + "\n")
    except Exception:
        log.exception("metrics not written", extra={"fields": {"dropped": _names(points)}})


#: A layout of documents (`_Layout`) by the shape of the points it writes: the base
#: dimensions, then each dimension set's key with its metrics' names and units.
_layouts: dict[tuple, list[_Layout]] = {}
#: Shapes kept at most (a process's points take few: their dimension values are bounded).
MAX_LAYOUTS = 1024


def _lines(points: _Points, timestamp_ms: int) -> list[str]:
    """The points' documents (`_packed`, `_document`), from the layout of points of the same
    shape when one is known: an invocation records the same metrics under the same
    dimension values as the last, and only their values and the time change."""
    shape = (_base_items, *[(key, *_metrics_of(group)) for key, group in points.items()])
    layouts = _layouts.get(shape) if _within_limits(points) else None
    if layouts is None:
        layouts = _layout(points)
        if layouts is None:
            return [_document(directives, timestamp_ms) for directives in _packed(points)]
        if len(_layouts) >= MAX_LAYOUTS:
            _layouts.clear()
        _layouts[shape] = layouts
    return [layout.document(points, timestamp_ms) for layout in layouts]


def _within_limits(points: _Points) -> bool:
    """Whether each metric's values fit in one document (the layouts' shapes say the rest)."""
    for group in points.values():
        for _, values in group.values():
            if len(values) > MAX_VALUES_PER_METRIC:
                return False
    return True


def _metrics_of(group: dict[str, tuple[Unit, list[float]]]) -> tuple[tuple[str, Unit], ...]:
    return tuple([(name, unit) for name, (unit, _) in group.items()])


class _Layout:
    """One document of a shape of points: its directives' text and its root's dimension
    values written once, the metrics' values filled in per flush."""

    __slots__ = ("_dimensions", "_heads", "_values")

    def __init__(self, directives: list[_Directive], keys: dict[int, tuple]) -> None:
        dimensions: dict[str, str] = {}
        heads = []
        #: Where each of the root's metric values comes from: (its name, its points' key).
        self._values: list[tuple[str, tuple]] = []
        for names_values, metric_set in directives:
            dimensions.update(names_values)
            heads.append(
                _directive(names_values, tuple((n, m["Unit"]) for n, m in metric_set.items()))
            )
            self._values.extend((name, keys[id(metric_set[name]["Value"])]) for name in metric_set)
        self._heads = f',"CloudWatchMetrics":[{",".join(heads)}]}},'
        #: The root's dimension values as `_encoder` writes them, without the closing brace.
        self._dimensions = _encoder.encode(dimensions)[1:-1]

    def document(self, points: _Points, timestamp_ms: int) -> str:
        values = _encoder.encode({name: points[key][name][1] for name, key in self._values})
        return f'{{"_aws":{{"Timestamp":{timestamp_ms}{self._heads}{self._dimensions},{values[1:]}'


def _layout(points: _Points) -> list[_Layout] | None:
    """The layouts of points of this shape; None where `_document` must write them (past
    the EMF limits, which split a metric's values, or a name both a dimension and a metric)."""
    keys: dict[int, tuple] = {}
    for key, group in points.items():
        if len(group) > MAX_METRICS_PER_DOCUMENT:
            return None
        for _, values in group.values():
            if not 0 < len(values) <= MAX_VALUES_PER_METRIC:
                return None
            keys[id(values)] = key
    layouts = []
    for directives in _packed(points):
        names = {name for names_values, _ in directives for name, _ in names_values}
        if any(not names.isdisjoint(metric_set) for _, metric_set in directives):
            return None
        layouts.append(_Layout(directives, keys))
    return layouts


#: A metric directive of a document: its dimensions' (name, value) pairs and its metric set.
_Directive = tuple[tuple[tuple[str, str], ...], dict[str, dict[str, Any]]]
#: Marks a metric's name among a document's root values (`_packed`).
_METRIC = object()


def _packed(points: _Points) -> list[list[_Directive]]:
    """The points as directives (one per metric set of a dimension set, `documents`),
    as few documents as their root values allow.

    The EMF specification lets a document carry several metric directives, each naming
    its dimensions, all reading their values from the document's root ("CloudWatchMetrics"
    is an array of MetricDirective objects; the root node holds every member their
    references name: docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
    CloudWatch_Embedded_Metric_Format_Specification.html). A directive
    joins the first document whose root holds no other value under one of its
    dimension names and none of its metric names; an invocation's points (a message's
    count and its handler's duration) are then one document, not one per dimension set.
    """
    packed: list[tuple[dict[str, object], list[_Directive]]] = []
    for key, group in points.items():
        dimensions = _base_items + key
        for metric_set in documents(group):
            for root, directives in packed:  # noqa: B007 - the entry found is used below
                if _fits(root, dimensions, metric_set):
                    break
            else:
                root, directives = {}, []
                packed.append((root, directives))
            root.update(dimensions)
            root.update(dict.fromkeys(metric_set, _METRIC))
            directives.append((dimensions, metric_set))
    return [directives for _, directives in packed]


def _fits(
    root: Mapping[str, object],
    dimensions: tuple[tuple[str, str], ...],
    metric_set: Mapping[str, Any],
) -> bool:
    """Whether a directive can read its values from a document's `root`: no other value
    under its dimension names, none of its metric names taken."""
    for name, value in dimensions:
        if root.get(name, value) != value:
            return False
    return root.keys().isdisjoint(metric_set)


def emf_document(
    dimensions: Mapping[str, str], metric_set: Mapping[str, Mapping[str, Any]], timestamp_ms: int
) -> str:
    """One EMF document: `metric_set` (`documents`) under `dimensions`, at `timestamp_ms`.

    The layout of Powertools' `serialize_metric_set` (see the module's docstring):
    `_aws` (timestamp, then the directive: namespace, the dimension names, each metric's
    name and unit), then the dimensions' values, then each metric's values. EMF
    specification: docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
    CloudWatch_Embedded_Metric_Format_Specification.html.
    """
    return _document([(tuple(dimensions.items()), dict(metric_set))], timestamp_ms)


def _document(directives: list[_Directive], timestamp_ms: int) -> str:
    """A document of one or more directives (`_packed`): each directive, then the root
    values (every directive's dimensions, then every metric's values)."""
    dimensions: dict[str, str] = {}
    values: dict[str, Any] = {}
    heads = []
    for names_values, metric_set in directives:
        dimensions.update(names_values)
        units = []
        for name, metric in metric_set.items():
            values[name] = metric["Value"]
            units.append((name, metric["Unit"]))
        heads.append(_directive(names_values, tuple(units)))
    root = _encoder.encode({**dimensions, **values})
    return (
        f'{{"_aws":{{"Timestamp":{int(timestamp_ms)},"CloudWatchMetrics":[{",".join(heads)}]}},'
        f"{root[1:]}"
    )


@functools.lru_cache(maxsize=1024)
def _directive(
    dimensions: tuple[tuple[str, str], ...], metrics: tuple[tuple[str, str], ...]
) -> str:
    """A metric directive, encoded once: its dimensions (bounded values) and metrics are few."""
    return _encoder.encode(
        {
            "Namespace": NAMESPACE,
            "Dimensions": [[name for name, _ in dimensions]],
            "Metrics": [{"Name": name, "Unit": unit} for name, unit in metrics],
        }
    )


def documents(group: dict[str, tuple[Unit, list[float]]]) -> list[dict[str, dict[str, Any]]]:
    """One dimension set's points as the metric sets of its EMF documents.

    A document holds at most `MAX_METRICS_PER_DOCUMENT` metrics and each metric at most
    `MAX_VALUES_PER_METRIC` values (EMF specification, docs.aws.amazon.com/AmazonCloudWatch/
    latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html: "up to 100
    values" per metric array, "up to 100 metrics" per directive); more make more documents.
    The sets are in the form Powertools' `serialize_metric_set` takes.
    """
    names = list(group)
    longest = 0
    for _, values in group.values():
        longest = max(longest, len(values))
    if len(names) <= MAX_METRICS_PER_DOCUMENT and 0 < longest <= MAX_VALUES_PER_METRIC:
        # One document: every invocation but the processor's largest batches.
        return [
            {name: {"Unit": unit.value, "Value": values} for name, (unit, values) in group.items()}
        ]
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


def _names(points: _Points) -> list[str]:
    return sorted({name for group in points.values() for name in group})
