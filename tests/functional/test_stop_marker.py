"""A cancel's stop marker: the running worker learns of a cancel from the subscriber read it
makes anyway, and reads the request itself only when no persist did (issue 15, point 3)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from streamer import keys, store
from streamer.entry import processor
from streamer.models import owner_key
from tests.conftest import FakeContext
from tests.functional import helpers
from tests.functional.helpers import Client, Stream


def status_of(request_id: str) -> str:
    """The request's stored status, read as one item (a scan of in-process moto races the
    worker thread's writes: "dictionary changed size during iteration")."""
    item = store.get_request(owner_key("t1", "alice"), request_id)
    return item.status if item is not None else ""


def wait_for(condition, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """The worker's cancellation reads, by kind: the request, the marker, the audience."""
    counted: Counter = Counter()
    for name, kind in (
        ("cancel_requested", "request"),
        ("stop_asked", "marker"),
        ("watchers", "audience"),
    ):
        original = getattr(store, name)

        def counting(*args, _original=original, _kind=kind, **kwargs):
            counted[_kind] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(store, name, counting)
    return counted


def run_in_background(event: dict) -> threading.Thread:
    worker = threading.Thread(target=processor.handler, args=(event, FakeContext()))
    worker.start()
    return worker


def test_a_reporting_request_never_reads_its_item_to_check_for_a_cancel(alice, management, reads):
    # GIVEN a request that reports and checkpoints every 0.1 s for 1.5 s
    payload = {"pages": 15, "page_ms": 100}
    alice.send({"action": "generate_report", "id": "r-1", "payload": payload})

    # WHEN it runs to its end
    Stream().run()

    # THEN its persists (one a second, conditional on no cancel) were its full checks, and the
    # checks between them read the stop marker or rode on the subscriber read; every check
    # read the request before (about six in this run). A request read is still right when
    # the handler's thread stalls for a second (a loaded machine) and no persist stood for
    # that second's check: a quiet run here makes one, and
    # CI made three under load (e081b5c), so up to three are allowed; the unit tests pin the
    # rule exactly.
    assert status_of("r-1") == "COMPLETED"
    assert reads["request"] <= 3
    assert reads["marker"] >= 1 and reads["audience"] >= 2


def test_a_cancel_while_running_leaves_a_marker_the_worker_stops_on(alice, management):
    # GIVEN a running request that bob follows
    bob = Client("conn-bob", user="alice", tenant="t1")
    bob.connect()
    alice.send({"action": "wait_for_cancel", "id": "w-1"})
    worker = run_in_background(Stream().next_event())
    wait_for(lambda: status_of("w-1") == "PROCESSING")
    bob.send({"action": "subscribe", "request_id": "w-1"})

    # WHEN alice cancels it
    alice.send({"action": "cancel", "request_id": "w-1"})
    worker.join(timeout=5)

    # THEN the marker is in the request's subscriptions partition, the worker stopped, and
    # both connections, and nobody else, got the CANCELLED complete
    key = keys.request_key(owner_key("t1", "alice"), "w-1")
    rows = [s["connection_id"]["S"] for s in helpers.subscriptions()]
    assert keys.stop_marker_id(key) in rows
    assert not worker.is_alive() and status_of("w-1") == "CANCELLED"
    for connection in ("conn-alice", "conn-bob"):
        assert management.messages(connection)[-1]["status"] == "CANCELLED"
    assert {c for _, c, _ in management.posts} == {"conn-alice", "conn-bob"}


def test_a_cancel_whose_marker_is_not_written_still_stops_the_worker(
    alice, management, monkeypatch, reads
):
    # GIVEN a running request, and the subscriptions table refusing the marker
    def refused(*args, **kwargs):
        raise store.StoreUnavailable("throttled")

    monkeypatch.setattr(store, "ask_to_stop", refused)
    alice.send({"action": "wait_for_cancel", "id": "w-1"})
    worker = run_in_background(Stream().next_event())
    wait_for(lambda: status_of("w-1") == "PROCESSING")

    # WHEN alice cancels it
    answer = alice.send({"action": "cancel", "request_id": "w-1"})
    worker.join(timeout=5)

    # THEN the cancel was taken (the flag decides), and the worker saw the flag with its next
    # full check
    assert answer["type"] == "status"
    assert not worker.is_alive() and status_of("w-1") == "CANCELLED"
    assert management.messages("conn-alice")[-1]["status"] == "CANCELLED"
