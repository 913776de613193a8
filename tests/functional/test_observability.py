"""Metrics (EMF) and log fields of real invocations, fed the events Lambda sends."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from local.schedule import scheduled_event
from streamer import config, metrics, runtime
from streamer.entry import authorizer, connect, disconnect, poller, processor, router, sweeper
from streamer.logs import JsonFormatter, lambda_context
from streamer.metric_names import BASE_DIMENSIONS, METRICS, NAMESPACE, Unit
from tests.conftest import FakeContext, load_event, stream_event


class LambdaContext(FakeContext):
    """Lambda's context object, with the attributes the log lines read."""

    function_name = "streamer-dev-router"
    function_version = "$LATEST"

    def __init__(self, request_id: str = "c0ffee00-0000-4000-8000-000000000001") -> None:
        super().__init__()
        self.aws_request_id = request_id


def emf_documents(output: str) -> list[dict[str, Any]]:
    """The EMF documents among stdout's lines."""
    documents = []
    for line in output.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            documents.append(document)
    return documents


def emitted(documents: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Metric name -> the dimension values (and value) of each document carrying it."""
    found: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == NAMESPACE
            assert len(directive["Metrics"]) <= 100
            for dimension_set in directive["Dimensions"]:
                assert len(dimension_set) <= 30
            (dimension_set,) = directive["Dimensions"]
            for metric in directive["Metrics"]:
                values = {name: document[name] for name in dimension_set}
                found.setdefault(metric["Name"], []).append(
                    {**values, "value": document[metric["Name"]], "unit": metric["Unit"]}
                )
    return found


def assert_declared(found: dict[str, list[dict[str, Any]]]) -> None:
    """Each metric found carries exactly its declared dimensions and unit."""
    for name, points in found.items():
        declared = METRICS[name]
        for point in points:
            assert set(point) - {"value", "unit"} == {*BASE_DIMENSIONS, *declared.dimensions}
            assert point["unit"] == declared.unit.value


@pytest.fixture
def staged(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.STAGE, "dev")
    runtime.reset()
    metrics.pending()


def test_a_connection_and_an_async_request_emit_their_metrics(staged, management, capsys):
    # GIVEN a client that connects, queues a report and goes away, each step a real invocation
    capsys.readouterr()
    assert connect.handler(load_event("connect"), LambdaContext()) == {"statusCode": 200}
    message = load_event("message")
    message["body"] = json.dumps(
        {"action": "generate_report", "id": "r-1", "payload": {"pages": 3, "page_ms": 30}}
    )
    router.handler(message, LambdaContext())
    event, _ = stream_event()
    assert processor.handler(event, LambdaContext()) == {"batchItemFailures": []}
    disconnect.handler(load_event("disconnect"), LambdaContext())

    # WHEN their stdout is read as CloudWatch reads it
    found = emitted(emf_documents(capsys.readouterr().out))

    # THEN every step's metric is there, with service, stage and region and its own dimensions
    assert_declared(found)
    base = {"service": "streamer", "stage": "dev", "region": "us-east-1"}
    assert found["ConnectionsOpened"] == [{**base, "value": [1.0], "unit": "Count"}]
    assert found["ConnectionsClosed"] == [{**base, "value": [1.0], "unit": "Count"}]
    assert {**base, "route": "$default", "outcome": "acknowledgment"} == {
        k: v for k, v in found["Messages"][0].items() if k not in ("value", "unit")
    }
    for name in ("AcknowledgmentDuration", "PickupDuration", "RunDuration", "TotalDuration"):
        (point,) = found[name]
        assert point["action"] == "generate_report" and len(point["value"]) == 1
    (outcome,) = found["Outcomes"]
    assert (outcome["action"], outcome["status"], outcome["value"]) == (
        "generate_report",
        "COMPLETED",
        [1.0],
    )
    (reports,) = found["ProgressReports"]
    (sent,) = found["ProgressMessagesSent"]
    assert reports["value"][0] >= sent["value"][0] >= 1


def test_a_refused_handshake_is_counted_by_reason(staged, aws, capsys, monkeypatch):
    # GIVEN a stack that verifies tokens, and a handshake with a bad one
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    monkeypatch.setenv(config.JWT_PUBLIC_KEY, pem.decode())
    runtime.reset()
    authorizer.reset()
    event = load_event("authorizer_connect")
    capsys.readouterr()

    # WHEN the authorizer refuses it
    with pytest.raises(Exception, match="Unauthorized"):
        authorizer.handler(event, LambdaContext())

    # THEN the refusal is a ConnectionsRefused point with reason "unauthorized"
    found = emitted(emf_documents(capsys.readouterr().out))
    assert_declared(found)
    assert [p["reason"] for p in found["ConnectionsRefused"]] == ["unauthorized"]


def test_an_empty_sweep_still_reports_zero_redrives(staged, aws, capsys):
    capsys.readouterr()
    event = scheduled_event(
        "arn:aws:events:us-east-1:123456789012:rule/sweeper", "us-east-1", "123456789012", 0
    )
    sweeper.handler(event, LambdaContext())
    found = emitted(emf_documents(capsys.readouterr().out))
    assert found["SweeperRedrives"][0]["value"] == [0.0]
    assert found["SweeperItemFailures"][0]["value"] == [0.0]


def test_a_metric_with_other_dimensions_than_declared_is_refused():
    with pytest.raises(ValueError, match="Messages takes dimensions"):
        metrics.count(METRICS["Messages"], route="$default")


def test_every_log_line_carries_the_invocation_fields(monkeypatch):
    # GIVEN an invocation traced by X-Ray, as Lambda sets it up
    monkeypatch.setenv(
        "_X_AMZN_TRACE_ID",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    )
    record = logging.LogRecord("streamer.router", logging.INFO, __file__, 1, "hello", None, None)

    # WHEN a line is logged inside it
    with lambda_context(LambdaContext("req-42")):
        line = json.loads(JsonFormatter().format(record))

    # THEN the line names the Lambda request, the function, its version and the trace
    assert line["aws_request_id"] == "req-42"
    assert line["function_name"] == "streamer-dev-router"
    assert line["function_version"] == "$LATEST"
    assert line["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert isinstance(line["cold_start"], bool)
    with lambda_context(LambdaContext("req-43")):
        assert json.loads(JsonFormatter().format(record))["cold_start"] is False


def _debug_lines_written(rate: float, draws: list[float], monkeypatch) -> list[bool]:
    """For each invocation (its random draw given), whether its DEBUG line was written."""
    from streamer import logs

    configured = logging.getLogger("streamer").level
    logs.configure_logging("INFO", rate)
    handler = next(h for h in logging.getLogger("streamer").handlers if h.filters)
    written = []
    try:
        for draw in draws:
            monkeypatch.setattr(logs.random, "random", lambda draw=draw: draw)
            with lambda_context(LambdaContext()):
                record = logging.LogRecord(
                    "streamer.x", logging.DEBUG, __file__, 1, "d", None, None
                )
                written.append(
                    logging.getLogger("streamer").isEnabledFor(logging.DEBUG)
                    and handler.filter(record)
                )
    finally:
        logs.configure_logging(logging.getLevelName(configured), 0.0)
    return written


def test_debug_lines_are_written_for_the_sampled_share_of_invocations(monkeypatch):
    # GIVEN level INFO and a debug sample rate of 25 %
    # WHEN four invocations draw 0.1, 0.3, 0.2 and 0.9
    written = _debug_lines_written(0.25, [0.1, 0.3, 0.2, 0.9], monkeypatch)
    # THEN the DEBUG lines of the invocations drawn under 0.25 are written, and only theirs
    assert written == [True, False, True, False]


def test_without_a_sample_rate_debug_lines_stay_out(monkeypatch):
    assert _debug_lines_written(0.0, [0.0, 0.5], monkeypatch) == [False, False]


def test_the_sample_rate_is_a_number_from_0_to_1():
    assert (
        config.Settings.from_env({config.LOG_DEBUG_SAMPLE_RATE: "0.05"}).log_debug_sample_rate
        == 0.05
    )
    assert (
        config.Settings.from_env({config.LOG_DEBUG_SAMPLE_RATE: "7"}).log_debug_sample_rate == 1.0
    )
    with pytest.raises(config.ConfigError, match=config.LOG_DEBUG_SAMPLE_RATE):
        config.Settings.from_env({config.LOG_DEBUG_SAMPLE_RATE: "often"})


def test_an_app_importing_powertools_after_a_flush_gets_the_whole_package(tmp_path):
    # GIVEN a process whose first flush loaded only Powertools' EMF provider
    script = (
        "from streamer import metric_names, metrics\n"
        "metrics.count(metric_names.CONNECTIONS_OPENED)\n"
        "metrics.flush()\n"
        # WHEN an app's handler imports Powertools as its documentation says
        "from aws_lambda_powertools import Logger, Metrics, Tracer\n"
        "import aws_lambda_powertools.metrics\n"
        "print(aws_lambda_powertools.metrics.Metrics is Metrics, Logger.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    # THEN it gets the real package, Logger and all, and the metric was written first
    lines = result.stdout.splitlines()
    assert emitted(emf_documents(result.stdout))["ConnectionsOpened"][0]["value"] == [1.0]
    assert lines[-1] == "True Logger"


def test_a_flush_that_cannot_write_logs_what_it_dropped_and_does_not_raise(monkeypatch, caplog):
    class BrokenStdout:
        def write(self, text: str) -> int:
            raise OSError("stdout is gone")

    metrics.pending()
    metrics.count(METRICS["ConnectionsClosed"])
    monkeypatch.setattr(sys, "stdout", BrokenStdout())
    with caplog.at_level(logging.ERROR, logger="streamer.metrics"):
        metrics.flush()
    (record,) = caplog.records
    assert record.getMessage() == "metrics not written"
    assert record.fields == {"dropped": ["ConnectionsClosed"]}


def test_a_sync_answer_a_retry_and_a_gone_connection_emit_their_metrics(
    staged, test_app, management, capsys
):
    # GIVEN a connected client of the test app
    assert connect.handler(load_event("connect"), LambdaContext()) == {"statusCode": 200}
    connection_id = load_event("connect")["requestContext"]["connectionId"]
    capsys.readouterr()

    def send(body: dict[str, Any]) -> dict[str, Any]:
        message = load_event("message")
        message["body"] = json.dumps(body)
        return json.loads(router.handler(message, LambdaContext())["body"])

    # WHEN it runs a sync echo, and queues a flaky request whose first attempt fails
    # while the connection is gone
    assert send({"action": "echo", "id": "e-1", "payload": {"x": 1}})["type"] == "response"
    assert send({"action": "flaky", "id": "f-1", "payload": {}})["type"] == "acknowledgment"
    management.gone.add(connection_id)
    event, _ = stream_event()
    processor.handler(event, LambdaContext())

    # THEN the sync run, the retry and the gone connection are counted, each as declared
    found = emitted(emf_documents(capsys.readouterr().out))
    assert_declared(found)
    assert [p["action"] for p in found["SyncDuration"]] == ["echo"]
    assert [(p["action"], p["value"]) for p in found["Retries"]] == [("flaky", [1.0])]
    assert found["GoneConnections"][0]["value"][0] >= 1
    assert {(p["route"], p["outcome"]) for p in found["Messages"]} == {
        ("$default", "response"),
        ("$default", "acknowledgment"),
    }


def test_a_poll_of_an_external_job_is_counted_by_action_and_outcome(
    staged, test_app, management, capsys
):
    # GIVEN an external job the processor left WAITING, due for its first poll
    assert connect.handler(load_event("connect"), LambdaContext()) == {"statusCode": 200}
    message = load_event("message")
    message["body"] = json.dumps({"action": "external_count", "id": "j-1", "payload": {"count": 2}})
    router.handler(message, LambdaContext())
    event, _ = stream_event()
    processor.handler(event, LambdaContext())
    capsys.readouterr()

    # WHEN the scheduled poller runs
    schedule = scheduled_event(
        "arn:aws:events:us-east-1:123456789012:rule/poller", "us-east-1", "123456789012", 0
    )
    assert poller.handler(schedule, LambdaContext())["polled"] == 1

    # THEN the poll is an ExternalJobPolls point of its action, outcome "polled"
    found = emitted(emf_documents(capsys.readouterr().out))
    assert_declared(found)
    assert [(p["action"], p["outcome"], p["value"]) for p in found["ExternalJobPolls"]] == [
        ("external_count", "polled", [1.0])
    ]


def _powertools_provider() -> Any:
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
        AmazonCloudWatchEMFProvider,
    )

    return AmazonCloudWatchEMFProvider


def test_every_declared_metric_passes_powertools_own_checks_and_serialises_alike():
    """Each declared name and unit is checked here by Powertools' per-point `add_metric`,
    once, and the document the flush writes equals the one Powertools' own path writes
    for the same points."""
    provider_class = _powertools_provider()
    for metric in METRICS.values():
        for values in ([2.0], [2.0, 3.5, 1e-3]):
            reference = provider_class(namespace=NAMESPACE)
            dimensions = {name: f"{name}-x" for name in (*BASE_DIMENSIONS, *metric.dimensions)}
            for name, value in dimensions.items():
                reference.add_dimension(name, value)
            for value in values:
                reference.add_metric(name=metric.name, unit=metric.unit.value, value=value)
            reference.timestamp = 1_700_000_000_123
            expected = reference.serialize_metric_set()

            (metric_set,) = metrics.documents({metric.name: (metric.unit, values)})
            written = metrics.emf_document(dimensions, metric_set, 1_700_000_000_123)
            assert json.loads(written) == expected
            assert written == json.dumps(expected, separators=(",", ":"))


def test_a_document_of_several_metrics_is_written_as_powertools_writes_it():
    provider_class = _powertools_provider()
    reference = provider_class(namespace=NAMESPACE)
    dimensions = {"service": "streamer", "stage": "dev", "region": "eu-west-1", "action": "é"}
    for name, value in dimensions.items():
        reference.add_dimension(name, value)
    reference.add_metric(name="RunDuration", unit="Milliseconds", value=12.0)
    reference.add_metric(name="Outcomes", unit="Count", value=3.0)
    reference.timestamp = 1_700_000_000_000
    group = {"RunDuration": (Unit.MILLISECONDS, [12.0]), "Outcomes": (Unit.COUNT, [3.0])}

    (metric_set,) = metrics.documents(group)

    written = metrics.emf_document(dimensions, metric_set, 1_700_000_000_000)
    assert written == json.dumps(reference.serialize_metric_set(), separators=(",", ":"))


def test_a_flush_writes_as_few_documents_as_the_dimension_values_allow(capsys, monkeypatch):
    monkeypatch.setattr(metrics, "_base", dict(metrics._base))
    monkeypatch.setattr(metrics, "_base_items", metrics._base_items)
    metrics.configure("dev", "eu-west-1")
    metrics.pending()
    capsys.readouterr()
    # GIVEN a message's count and its handler's durations (other dimensions), and a count
    # of the same metric under another outcome
    metrics.count(METRICS["Messages"], route="$default", outcome="response")
    metrics.count(METRICS["Messages"], route="$default", outcome="response")
    metrics.duration(METRICS["SyncDuration"], 7, action="echo")
    metrics.duration(METRICS["SyncDuration"], 9, action="echo")
    metrics.count(METRICS["Messages"], route="$default", outcome="INVALID_MESSAGE")

    # WHEN they are flushed
    metrics.flush()

    # THEN the first two share a document (a directive each), the third has its own: one
    # root holds one value per name
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(d["_aws"]["CloudWatchMetrics"]) for d in documents] == [2, 1]
    found = emitted(documents)
    assert_declared(found)
    assert sorted((p["outcome"], p["value"]) for p in found["Messages"]) == [
        ("INVALID_MESSAGE", [1.0]),
        ("response", [2.0]),
    ]
    assert [(p["action"], p["stage"], p["region"], p["value"]) for p in found["SyncDuration"]] == [
        ("echo", "dev", "eu-west-1", [7.0, 9.0])
    ]


def test_points_past_the_emf_limits_make_more_documents():
    # 250 durations of one metric and 150 counts of others, in one dimension set
    group = {"RunDuration": (Unit.MILLISECONDS, [float(n) for n in range(250)])}
    group |= {f"M{n}": (Unit.COUNT, [1.0]) for n in range(150)}

    sets = metrics.documents(group)

    assert all(len(s) <= 100 for s in sets)
    assert all(len(m["Value"]) <= 100 for s in sets for m in s.values())
    durations = [v for s in sets for v in s.get("RunDuration", {}).get("Value", [])]
    assert durations == [float(n) for n in range(250)]
    assert sorted(name for s in sets for name in s if name != "RunDuration") == sorted(
        f"M{n}" for n in range(150)
    )


def test_a_line_logged_with_logs_info_is_the_line_logging_writes(tmp_path):
    # GIVEN a configured process, a context bound and a line's fields (in a fresh process:
    # configuring logging is for the whole process)
    script = (
        "import logging\n"
        "from streamer import logs\n"
        "logs.configure_logging('INFO', 0.0)\n"
        "log = logging.getLogger('streamer.router')\n"
        "fields = {'answer': 'response', 'duration_ms': 3, 'note': 'é\"'}\n"
        "with logs.log_context(connection_id='c1', tenant_id='acme', user_id=None):\n"
        # WHEN the same line is logged through logging, then through `logs.info`
        "    log.info('message answered', extra={'fields': fields})\n"
        "    logs.info(log, 'message answered', fields)\n"
        # and once more with a handler of the caller's own on the way
        "    captured = []\n"
        "    class Capture(logging.Handler):\n"
        "        def emit(self, record): captured.append(record.fields)\n"
        "    log.addHandler(Capture())\n"
        "    logs.info(log, 'message answered', fields)\n"
        "    print(captured == [fields])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    # THEN both lines are the same object but for their timestamps, and a handler of one's
    # own still gets the record
    through_logging, direct, through_logging_again, captured = result.stdout.splitlines()
    lines = [json.loads(line) for line in (through_logging, direct, through_logging_again)]
    assert all(isinstance(line.pop("timestamp"), int) for line in lines)
    assert lines[0] == lines[1] == lines[2]
    assert list(json.loads(direct)) == list(json.loads(through_logging))
    assert lines[0]["note"] == 'é"' and "user_id" not in lines[0]
    assert captured == "True"


def test_a_flush_writes_what_the_documents_of_its_points_are_whatever_their_shape():
    # GIVEN points of many shapes: metrics, dimension values, several values, names of a
    # dimension used as a metric's, past the EMF limits, and the same shape twice
    import random

    rng = random.Random(15)
    metric_names, dimension_names = ["A", "B", "C"], ["A", "action", "route", "outcome"]
    for _ in range(300):
        points = {}
        for _ in range(rng.randint(1, 3)):
            key = tuple(
                sorted(
                    dict((rng.choice(dimension_names), rng.choice("xyé")) for _ in range(2)).items()
                )
            )
            group = points.setdefault(key, {})
            for name in rng.sample(metric_names, rng.randint(1, 3)):
                unit = rng.choice([Unit.COUNT, Unit.MILLISECONDS])
                group[name] = (
                    unit,
                    [float(rng.randint(0, 9)) for _ in range(rng.choice([1, 1, 1, 2, 3, 101]))],
                )
        for _ in range(2):
            # WHEN they are written
            written = metrics._lines(points, 1_700_000_000_000)
            # THEN the lines are the documents they make, one by one
            assert written == [
                metrics._document(directives, 1_700_000_000_000)
                for directives in metrics._packed(points)
            ]


def test_a_point_is_keyed_by_its_dimension_values_as_text_whatever_was_recorded_before():
    # GIVEN points recorded under values that are equal but not the same text
    metrics.pending()
    metrics.count(METRICS["Messages"], route="$default", outcome="response")
    metrics.count(METRICS["Messages"], route="$default", outcome=1)  # type: ignore[arg-type]
    metrics.count(METRICS["Messages"], route="$default", outcome=True)  # type: ignore[arg-type]
    metrics.count(METRICS["Messages"], outcome="response", route="$default")
    # WHEN they are taken THEN each text has its own count, whatever the order of the names
    points = metrics.pending()
    assert {dict(key)["outcome"]: group["Messages"][1] for key, group in points.items()} == {
        "response": [2.0],
        "1": [1.0],
        "True": [1.0],
    }
    # AND a metric recorded with other dimensions than declared is still refused
    with pytest.raises(ValueError, match="Messages takes dimensions"):
        metrics.count(METRICS["Messages"], route="$default", outcome="response", extra="x")
