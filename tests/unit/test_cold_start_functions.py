"""The cold-start benchmark measures the functions of the catalog, the one list of them.

Only its list of functions and the event each one gets are checked here; the
benchmark itself runs with `make bench`.
"""

from __future__ import annotations

from bench import cold_start
from streamer import catalog
from streamer.catalog import Trigger


def test_the_benchmark_measures_every_function_of_the_catalog_with_its_handler():
    assert {f.name: f.handler for f in catalog.FUNCTIONS.values()} == cold_start.ENTRY_POINTS


def test_each_function_gets_an_event_of_what_invokes_it():
    events = cold_start._events_for_run(0, "token", {"Records": [{"eventSource": "aws:dynamodb"}]})

    assert set(events) == set(catalog.FUNCTIONS)
    for function in catalog.FUNCTIONS.values():
        event = events[function.name]
        trigger = function.triggers[0]
        if trigger is Trigger.SCHEDULE:
            # each scheduled function is invoked by its own rule
            assert event["detail-type"] == "Scheduled Event"
            assert event["resources"][0].endswith(f"rule/streamer-{function.name}-schedule")
        elif trigger is Trigger.HTTP_API:
            assert event["version"] == "2.0" and "http" in event["requestContext"]
        elif trigger is Trigger.NOTIFICATIONS:
            assert event["Records"][0]["EventSource"] == "aws:sns"
        elif trigger is Trigger.REQUESTS_STREAM:
            assert event["Records"][0]["eventSource"] == "aws:dynamodb"
        else:
            assert event["requestContext"]["connectionId"] == "cold-start-0="
