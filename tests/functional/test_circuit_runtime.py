"""The circuit breaker in the router and the processor, over moto: an action that keeps failing
is refused UNAVAILABLE (nothing stored) and its queued requests wait instead of running."""

from __future__ import annotations

import pytest

from streamer import breaker, circuit, config, runtime, sweeper
from streamer.entry import processor
from streamer.protocol import now_ms
from tests.conftest import FakeContext
from tests.functional import apps, helpers
from tests.functional.helpers import Client, Stream
from tests.functional.test_sweeper import management_delivery

MINIMUM_CALLS = 3
OPEN_S = 30


@pytest.fixture
def alice(test_app, management, monkeypatch) -> Client:
    monkeypatch.setenv(config.CIRCUIT_MINIMUM_CALLS, str(MINIMUM_CALLS))
    monkeypatch.setenv(config.CIRCUIT_FAILURE_RATIO, "0.5")
    monkeypatch.setenv(config.CIRCUIT_OPEN_S, str(OPEN_S))
    # Every instance here is past its first second: sync runs read their circuit
    # (a new instance's first second is tests/unit/test_circuit.py's).
    monkeypatch.setattr(circuit, "COLD_TRUST_MS", 0)
    runtime.reset()
    apps.runs.clear()
    client = Client("conn-alice", user="alice", tenant="t1")
    client.connect()
    return client


def instance_breaker() -> breaker.Breaker:
    return breaker.breaker_for(runtime.current().settings)


def request_item(request_id: str) -> dict | None:
    return next((i for i in helpers.requests() if i["request_id"]["S"] == request_id), None)


def fail_explode(alice: Client, count: int) -> None:
    """`count` explode requests run and fail; the instance then writes its counts (a second on)."""
    for n in range(count):
        assert alice.send({"action": "explode", "id": f"x-{n}"})["type"] == "acknowledgment"
    Stream().run()
    instance_breaker().flush(force=True)


def test_an_action_failing_past_the_ratio_is_refused_unavailable_and_nothing_is_stored(alice):
    # GIVEN explode failed on every run, as often as the breaker needs
    fail_explode(alice, MINIMUM_CALLS)

    # WHEN alice asks for it again
    answer = alice.send({"action": "explode", "id": "x-again"})

    # THEN she is told to come back once the circuit half-opens, and nothing was stored
    assert answer["type"] == "error" and answer["request_id"] == "x-again"
    error = answer["error"]
    assert error["code"] == "UNAVAILABLE" and error["retryable"] is True
    assert 0 < error["details"]["retry_after_ms"] <= OPEN_S * 1000
    assert request_item("x-again") is None
    # Other actions are not affected.
    other = alice.send({"action": "generate_report", "id": "r-1", "payload": {"pages": 1}})
    assert other["type"] == "acknowledgment"


def test_the_circuits_state_is_shared_through_the_store_not_the_instance(alice):
    fail_explode(alice, MINIMUM_CALLS)

    # WHEN another instance (a fresh process) gets a request for it
    runtime.reset()
    answer = alice.send({"action": "explode", "id": "x-other-instance"})

    assert answer["error"]["code"] == "UNAVAILABLE"
    assert any(i["connection_id"]["S"] == "circuit#explode" for i in helpers.circuit_items())


def test_a_queued_request_of_an_open_action_waits_unclaimed_then_is_redriven(alice, management):
    # GIVEN one more explode request queued before the circuit opened
    stream = Stream()
    for n in range(MINIMUM_CALLS):
        alice.send({"action": "explode", "id": f"x-{n}"})
    event = stream.next_event()
    alice.send({"action": "explode", "id": "x-queued"})
    late = stream.next_event()
    processor.handler(event, FakeContext())
    instance_breaker().flush(force=True)

    # WHEN the processor gets its record while the circuit is open
    before = now_ms()
    assert processor.handler(late, FakeContext()) == {"batchItemFailures": []}

    # THEN it did not run, used no attempt, and waits for the sweeper until the circuit half-opens
    assert "x-queued" not in apps.runs
    item = request_item("x-queued")
    assert item["status"] == {"S": "RETRYING"} and item["attempt"] == {"N": "0"}
    due_at = int(item["due_at"]["N"])
    assert before + OPEN_S * 1000 * 0.9 <= due_at <= now_ms() + OPEN_S * 1000 * 1.1
    assert [m for m in management.messages("conn-alice") if m["request_id"] == "x-queued"] == []

    # AND the sweeper puts it back to PENDING once that time comes
    report = sweeper.sweep(runtime.current().settings.region, management, due_at + 1)
    assert report.redriven == ["x-queued"]
    assert request_item("x-queued")["status"] == {"S": "PENDING"}


def test_sync_runs_count_too_and_refused_payloads_do_not(alice):
    # GIVEN a sync action timing out on every run, and another whose callers send bad payloads
    for n in range(MINIMUM_CALLS):
        answer = alice.send(
            {"action": "slow_sync", "id": f"s-{n}", "payload": {"seconds": 0.5}}, remaining_ms=1100
        )
        assert answer["error"]["code"] == "TIMEOUT"
        refused = alice.send({"action": "count", "id": f"c-{n}", "payload": {"to": "x"}})
        assert refused["error"]["code"] == "VALIDATION_ERROR"
    instance_breaker().flush(force=True)

    # THEN the failing one is refused at once; the one the callers got wrong still runs
    assert alice.send({"action": "slow_sync", "id": "s-again"})["error"]["code"] == "UNAVAILABLE"
    answer = alice.send({"action": "count", "id": "c-good", "payload": {"to": 2}})
    assert answer["type"] == "response" and answer["data"] == [0, 1]


def test_a_record_that_comes_again_while_the_circuit_is_open_still_sends_the_stored_complete(
    alice, management
):
    # GIVEN requests that ran and ended, which opened their action's circuit
    runtime.current().__dict__["delivery"] = management_delivery(management)
    for n in range(MINIMUM_CALLS):
        alice.send({"action": "explode", "id": f"x-{n}"})
    batch = Stream().next_event()
    processor.handler(batch, FakeContext())
    instance_breaker().flush(force=True)
    first = [m for m in management.messages("conn-alice") if m["type"] == "complete"]

    # WHEN Lambda delivers the batch again (its workers may have died before their completes)
    processor.handler(batch, FakeContext())

    # THEN each stored complete goes out again, with its seq, though the circuit is open
    again = [m for m in management.messages("conn-alice") if m["type"] == "complete"]
    assert len(first) == MINIMUM_CALLS and len(again) == 2 * MINIMUM_CALLS
    assert sorted((m["request_id"], m["seq"]) for m in again) == sorted(
        (m["request_id"], m["seq"]) for m in first * 2
    )
    assert apps.runs.count("x-0") == 1
