"""Items and stream records of the previous release and of this one, read and run by both.

During a gradual deploy both releases read and write the same tables
(docs/deploying.md, "Item formats across a deploy"). The previous release is
a frozen copy of its runtime (`tests/compat/previous/`, commit in `RELEASE`);
the two cannot share an interpreter, so each runs `tests/compat/scenario.py`
in a process of its own on moto. Frozen fixtures of both releases' items and
stream records are in `tests/fixtures/formats/<format>/`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import streamer
from streamer.models import ITEM_FORMAT, OLDEST_READ_FORMAT, RequestItem

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "compat" / "scenario.py"
FIXTURES = ROOT / "tests" / "fixtures" / "formats"
#: Where each release's `streamer` package is: the current one is the one this process runs.
RELEASES = {
    "previous": ROOT / "tests" / "compat" / "previous",
    "current": Path(streamer.__file__).resolve().parents[1],
}
#: The format each release writes.
FORMATS = {"previous": OLDEST_READ_FORMAT, "current": ITEM_FORMAT}
CIRCUIT_PREFIX = "circuit#"


def run(release: str, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMER_", "AWS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(RELEASES[release]), str(ROOT)])
    done = subprocess.run(
        [sys.executable, str(SCENARIO), *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-4000:]


def fixture(release: str) -> Path:
    return FIXTURES / str(FORMATS[release])


@cache
def consumed(reader: str, writer: str, tables_of: str, tmp: str) -> dict[str, Any]:
    """What `reader`'s code did with `writer`'s fixture, on tables as `tables_of` makes them."""
    out = Path(tmp) / f"{reader}-{writer}-{tables_of}.json"
    run(reader, "consume", str(fixture(writer)), str(fixture(tables_of) / "tables.json"), str(out))
    return json.loads(out.read_text())


@cache
def declared(release: str, tmp: str) -> dict[str, dict[str, dict[str, Any]]]:
    out = Path(tmp) / f"attributes-{release}.json"
    run(release, "attributes", str(out))
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("formats"))


def steps(release: str) -> list[dict[str, Any]]:
    return json.loads((fixture(release) / "items.json").read_text())


def kinds(step: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each item of a step with its kind: the connections table holds circuits too."""
    found = []
    for table, items in step["tables"].items():
        for item in items:
            circuit = item.get("connection_id", {}).get("S", "").startswith(CIRCUIT_PREFIX)
            found.append(("circuits" if circuit else table, item))
    return found


def shape(all_steps: list[dict[str, Any]]) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """The item shapes of each step: which attributes of which types (values vary run to run).

    A set per step: how many circuit count items the breaker flushed by then depends on
    the clock (it writes at most once a second), their shape does not.
    """
    return sorted(
        {
            (f"{s['step']}/{kind}", tuple(sorted((n, next(iter(v))) for n, v in item.items())))
            for s in all_steps
            for kind, item in kinds(s)
        }
    )


# --- the fixtures are what each release writes -------------------------------------------------


@pytest.mark.parametrize("release", ["previous", "current"])
def test_the_frozen_fixture_is_what_the_release_writes(release: str, tmp_path: Path) -> None:
    """A writer that adds, drops or retypes an attribute fails here until the fixture is
    generated again (`tests/compat/scenario.py generate`), and the tests below then check
    the other release against it."""
    run(release, "generate", str(tmp_path))
    written = json.loads((tmp_path / "items.json").read_text())
    assert shape(written) == shape(steps(release))
    records = json.loads((tmp_path / "stream.json").read_text())
    frozen = json.loads((fixture(release) / "stream.json").read_text())
    assert [(r["step"], r["record"]["eventName"]) for r in records] == [
        (r["step"], r["record"]["eventName"]) for r in frozen
    ]


def test_every_item_this_release_writes_carries_its_format() -> None:
    for step in steps("current"):
        for kind, item in kinds(step):
            assert item.get("item_format") == {"N": str(ITEM_FORMAT)}, (step["step"], kind)
    previous = [item for step in steps("previous") for _, item in kinds(step)]
    assert previous and not any("item_format" in item for item in previous)
    queued = next(s for s in steps("previous") if s["step"] == "async queued")
    request = RequestItem.from_raw_data(queued["tables"]["requests"][-1])
    assert request.format == OLDEST_READ_FORMAT


# --- writers never drop what the other release's readers need -----------------------------------


@pytest.mark.parametrize(("writer", "reader"), [("current", "previous"), ("previous", "current")])
def test_every_item_written_has_what_the_other_release_reads(
    writer: str, reader: str, tmp: str
) -> None:
    """Each item one release writes, at every step of a request's life, carries every
    attribute the other release's models require, each in the type they read it as."""
    models = declared(reader, tmp)
    missing, retyped = [], []
    for step in steps(writer):
        for kind, item in kinds(step):
            for name, attribute in models[kind].items():
                if name not in item:
                    if not attribute["optional"]:
                        missing.append(f"{step['step']}: {kind}.{name}")
                elif next(iter(item[name])) not in (attribute["type"], "NULL"):
                    retyped.append(f"{step['step']}: {kind}.{name} is {next(iter(item[name]))}")
    assert missing == [] and retyped == []


#: The model classes of the runtime, by the kind of item they write.
MODEL_KINDS = {
    "Connection": "connections",
    "CircuitRecord": "circuits",
    "RequestItem": "requests",
    "Subscription": "subscriptions",
}
REMOVE = re.compile(r"\b(" + "|".join(MODEL_KINDS) + r")\.(\w+)\.remove\(\)")


def test_no_write_of_this_release_removes_what_the_previous_release_requires(tmp: str) -> None:
    """Every attribute an update of this release removes (`<Model>.<attribute>.remove()`
    anywhere in the runtime, on every path, not only the scenario's) is one the previous
    release's models read as optional."""
    removed = {
        (MODEL_KINDS[model], attribute)
        for path in (RELEASES["current"] / "streamer").rglob("*.py")
        for model, attribute in REMOVE.findall(path.read_text())
    }
    assert ("requests", "due_region") in removed  # the finish's: the pattern sees them all
    previous = declared("previous", tmp)
    required = sorted(
        f"{kind}.{name}"
        for kind, name in removed
        if name in previous[kind] and not previous[kind][name]["optional"]
    )
    assert required == []


# --- each release runs the other's items and stream records --------------------------------------


@pytest.mark.parametrize("writer", ["previous", "current"])
@pytest.mark.parametrize("reader", ["previous", "current"])
def test_a_request_queued_by_either_release_is_run_by_either(
    reader: str, writer: str, tmp: str
) -> None:
    """From the INSERT record `writer` wrote, `reader` claims, runs and completes the request,
    and its owner and a subscriber `writer` stored get the progress and the complete."""
    report = consumed(reader, writer, "current", tmp)
    assert report["stream"] == {
        "failures": [],
        "status": "COMPLETED",
        "owner": ["progress", "progress", "complete"],
        "subscriber": ["progress", "progress", "complete"],
    }
    assert report["unreadable"] == []


@pytest.mark.parametrize("writer", ["previous", "current"])
@pytest.mark.parametrize("reader", ["previous", "current"])
def test_connections_and_subscriptions_of_either_release_get_either_releases_deliveries(
    reader: str, writer: str, tmp: str
) -> None:
    report = consumed(reader, writer, "current", tmp)
    # A topic notification reaches the subscriber; one to the user reaches both connections.
    assert report["deliveries"] == {
        "owner": ["notification"],
        "subscriber": ["notification", "notification"],
    }
    assert report["retained"] == {"n": 2}
    # The stored sync answer is given again for a repeated id, and its status read.
    assert report["sync"] == {"again": {"echo": {"hello": "world"}}, "status": "COMPLETED"}
    # The circuit `writer` opened is open for `reader`.
    assert report["circuit"] == {"open_until": 1000, "calls": 20}


@pytest.mark.parametrize("writer", ["previous", "current"])
def test_this_releases_sweeper_redrives_a_request_either_release_queued(
    writer: str, tmp: str
) -> None:
    report = consumed("current", writer, "current", tmp)
    assert report["sweep"] == {
        "redriven": 1,
        "status": "COMPLETED",
        "owner": ["progress", "progress", "complete"],
    }


def test_the_previous_sweeper_does_not_see_a_request_this_release_queued_under_the_cap(
    tmp: str,
) -> None:
    """While the per-user cap is on (the default), this release queues an async request in
    the cap's index alone, not in the due index (`keys.watched_by`); the previous release's
    sweeper reads the due index only, so even with the index it was deployed with (every
    attribute projected) it does not find this release's request never picked up, and
    leaves it PENDING: only this release's sweeper moves it on (docs/deploying.md, "What
    the previous release cannot do beside this one")."""
    report = consumed("previous", "current", "previous", tmp)
    assert report["sweep"] == {"redriven": 0, "status": "PENDING", "owner": []}


def test_the_previous_sweeper_skips_what_a_keys_only_index_lists(tmp: str) -> None:
    """With this release's keys-only due index the previous sweeper finds a due request but
    reads no status from it, and leaves it as it is, counting no failure: the previous
    release must not be the only sweeper once the index is keys-only (docs/deploying.md)."""
    report = consumed("previous", "current", "current", tmp)
    assert report["sweep"] == {"redriven": 0, "status": "PENDING", "owner": []}


@pytest.mark.parametrize("writer", ["previous", "current"])
def test_this_release_sends_again_the_complete_of_a_record_delivered_again(
    writer: str, tmp: str
) -> None:
    """A request's INSERT record delivered again after it ended (its worker's invocation
    failed after the finish): this release sends the stored `complete` again, whichever
    release ran it."""
    report = consumed("current", writer, "current", tmp)
    assert report["redelivered"] == {"failures": [], "resent": 0, "owner": ["complete"]}


def test_the_previous_release_does_not_send_a_complete_this_release_lost(tmp: str) -> None:
    """This release's finish takes the request off the due index, where the previous
    release's sweeper looked for a `complete` lost with its worker; the previous processor
    does not send it for a record delivered again. A `complete` lost by this release's
    worker and redelivered to the previous release stays unsent (the client reads it with
    `status` or `subscribe`): docs/deploying.md, "Item formats across a deploy"."""
    report = consumed("previous", "current", "current", tmp)
    assert report["redelivered"] == {"failures": [], "resent": 0, "owner": []}
