"""Every conversation vector (client/conversation/vectors) run against the Python machine.

The JS client's suite runs the same files; together they show the two
clients hold one conversation. Each file is one test, so the count shows.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from client.conversation import Conversation, Options, Output

VECTORS = Path(__file__).resolve().parents[2] / "client" / "conversation" / "vectors"
VECTOR_FILES = sorted(VECTORS.glob("*.json"))


def machine_for(options: dict[str, Any]) -> Conversation:
    """The machine with the vector's clock, id generator and random draws."""
    counters = {"message": itertools.count(1), "request": itertools.count(1)}
    prefixes = {"message": "m-", "request": "r-"}
    draws = itertools.cycle(options.get("random", [0.5]))
    return Conversation(
        Options.from_json(options),
        now_ms=options.get("clock_start_ms", 0),
        new_id=lambda kind: f"{prefixes[kind]}{next(counters[kind])}",
        random=lambda: next(draws),
    )


def apply(machine: Conversation, step: dict[str, Any]) -> Output:
    """Feed one step's input to the machine."""
    if "receive" in step:
        conn = step.get("conn", machine._current)
        return machine.receive(conn, json.dumps(step["receive"]))
    if "event" in step:
        event = step["event"]
        if event == "tick":
            return machine.tick(step["at"])
        if event == "token":
            return machine.token(step["token"])
        if event == "token_failed":
            return machine.token_failed()
        if event == "open":
            return machine.opened(step["conn"])
        if event == "close":
            return machine.closed(step["conn"])
        if event == "handshake_refused":
            return machine.refused(step["conn"], step["status"])
        if event == "connect_failed":
            return machine.unreachable(step["conn"])
        raise AssertionError(f"unknown event {event!r}")
    call, args = step["call"], step.get("args", {})
    if call == "connect":
        return machine.connect()
    if call == "close":
        return machine.close()
    if call == "request":
        return machine.request(
            step.get("handle"),
            args["action"],
            args.get("payload"),
            request_id=args.get("id"),
            metadata=args.get("metadata"),
            sync_only=args.get("sync_only", False),
        )
    handle = step["handle"]
    if call in ("subscribe", "unsubscribe", "status", "cancel"):
        return getattr(machine, call)(handle, args["request_id"])
    if call == "ping":
        return machine.ping(handle)
    if call in ("subscribe_topic", "unsubscribe_topic"):
        return getattr(machine, call)(handle, args["topic"])
    raise AssertionError(f"unknown call {call!r}")


def as_json(output: Output) -> dict[str, list[dict[str, Any]]]:
    return {
        "io": [io.to_json() for io in output.io],
        "events": [event.to_json() for event in output.events],
        "results": [result.to_json() for result in output.results],
    }


@pytest.mark.parametrize("path", VECTOR_FILES, ids=[p.stem for p in VECTOR_FILES])
def test_conversation_vector(path: Path) -> None:
    vector = json.loads(path.read_text())
    machine = machine_for(vector.get("options", {}))
    for number, step in enumerate(vector["steps"], start=1):
        # GIVEN the machine after the steps before / WHEN this step's input arrives
        got = as_json(apply(machine, step))
        expect = step.get("expect", {})
        wanted = {kind: expect.get(kind, []) for kind in ("io", "events", "results")}
        # THEN exactly the expected I/O, events and results come out, in order
        assert got == wanted, f"{vector['name']} step {number}: {json.dumps(step)}"
        if "state" in expect:
            assert machine.state == expect["state"], f"{vector['name']} step {number}"


def test_there_are_vectors_for_both_clients_to_run() -> None:
    # GIVEN the shared vectors / THEN there are some, each named after its file
    assert len(VECTOR_FILES) >= 10
    for path in VECTOR_FILES:
        assert json.loads(path.read_text())["name"] == path.stem
