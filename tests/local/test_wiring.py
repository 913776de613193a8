"""The local stack runs the catalog's functions, no more and no fewer, wired as declared."""

from __future__ import annotations

import pytest

from local.__main__ import _options, _stack_parser
from local.event_source_mapping import MappingConfig
from local.stack import PROCESSES, THREADS, StackOptions, schedule_intervals
from local.wiring import DEFAULT_PROCESSOR_CONCURRENCY, WiringError, function_specs, wire
from streamer import catalog
from streamer.catalog import Trigger


def test_the_local_functions_are_the_catalogs_with_its_handlers_and_sizes() -> None:
    # WHEN the local stack's function specs are made
    specs = function_specs(MappingConfig(parallelization_factor=3), processor_timeout_s=120)

    # THEN there is one per catalog function, with its handler, memory and timeout; the
    # stream's function runs once per lane with the configured timeout
    assert set(specs) == set(catalog.FUNCTIONS)
    for name, declared in catalog.FUNCTIONS.items():
        spec = specs[name]
        assert spec.name == f"streamer-{name}"
        assert spec.handler == declared.handler
        assert spec.memory_mb == declared.memory_mb
        if Trigger.REQUESTS_STREAM not in declared.triggers:
            assert spec.timeout_s == declared.timeout_s
    stream = catalog.the_one(Trigger.REQUESTS_STREAM).name
    assert (specs[stream].timeout_s, specs[stream].concurrency) == (120, 3)


def test_without_a_timeout_the_stream_function_has_the_catalogs() -> None:
    stream = catalog.the_one(Trigger.REQUESTS_STREAM)
    assert function_specs(MappingConfig())[stream.name].timeout_s == stream.timeout_s


def test_only_the_stream_function_gets_the_processor_concurrency_limit() -> None:
    stream = catalog.the_one(Trigger.REQUESTS_STREAM).name
    specs = function_specs(MappingConfig(), processor_concurrency=3)
    assert specs[stream].reserved_concurrency == 3
    assert {s.reserved_concurrency for n, s in specs.items() if n != stream} == {None}
    assert StackOptions().processor_concurrency == DEFAULT_PROCESSOR_CONCURRENCY == 100


def test_the_stack_runs_its_functions_in_worker_processes_unless_told_otherwise() -> None:
    assert _options(_stack_parser().parse_args([])).invocations == PROCESSES
    assert _options(_stack_parser().parse_args(["--invocations", "threads"])).invocations == THREADS
    specs = function_specs(MappingConfig(), function_concurrency=3)
    stream = catalog.the_one(Trigger.REQUESTS_STREAM).name
    scheduled = {f.name for f in catalog.triggered_by(Trigger.SCHEDULE)}
    others = {n: s.concurrency for n, s in specs.items() if n != stream and n not in scheduled}
    assert set(others.values()) == {3}


def test_each_trigger_the_local_stack_plays_invokes_the_catalogs_function() -> None:
    # WHEN the catalog's functions are wired
    wiring = wire({name: name for name in catalog.FUNCTIONS})

    # THEN each trigger gets the function the catalog declares for it, and every function
    # is invoked by something
    played = {
        Trigger.WEBSOCKET_AUTHORIZER: [wiring.authorizer],
        Trigger.WEBSOCKET_CONNECT: [wiring.connect],
        Trigger.WEBSOCKET_DISCONNECT: [wiring.disconnect],
        Trigger.WEBSOCKET_DEFAULT: [wiring.default_route],
        Trigger.REQUESTS_STREAM: [wiring.stream],
        Trigger.SCHEDULE: list(wiring.scheduled),
        Trigger.HTTP_API: [wiring.http],
        Trigger.NOTIFICATIONS: [wiring.notifications],
    }
    assert set(played) == set(Trigger)
    for trigger, names in played.items():
        assert names == [f.name for f in catalog.triggered_by(trigger)]
    assert {name for names in played.values() for name in names} == set(catalog.FUNCTIONS)


def test_every_scheduled_function_has_a_local_interval() -> None:
    intervals = schedule_intervals(StackOptions(sweep_interval_s=3, poll_jobs_interval_s=4))
    assert set(intervals) == {f.name for f in catalog.triggered_by(Trigger.SCHEDULE)}
    assert intervals == {"sweeper": 3, "poller": 4}


def test_a_function_outside_the_catalog_is_refused() -> None:
    with pytest.raises(WiringError, match="not in the catalog: \\['reporter'\\]"):
        wire({**{name: name for name in catalog.FUNCTIONS}, "reporter": "reporter"})


def test_a_catalog_function_left_out_is_refused() -> None:
    functions = {name: name for name in catalog.FUNCTIONS if name != "poller"}
    with pytest.raises(WiringError, match="not started: \\['poller'\\]"):
        wire(functions)
