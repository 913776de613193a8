"""Leases and what a client sees after a worker dies: found by the fault-injection suite."""

from __future__ import annotations

import pytest

from streamer import store
from streamer.entry import processor
from tests.conftest import FakeContext
from tests.unit.helpers import Client, Stream


@pytest.fixture
def alice(test_app, management) -> Client:
    client = Client("conn-alice", user="alice", tenant="t1")
    client.connect()
    return client


def test_a_lease_ends_with_the_invocation_plus_the_margin(alice, monkeypatch):
    # GIVEN a queued request, and a processor invocation with 4 s left to run
    alice.send({"action": "explode", "id": "x-1"})
    leases = []
    real_claim = store.claim_request

    def claim(item, now_ms, lease_expires_at):
        leases.append(lease_expires_at - now_ms)
        return real_claim(item, now_ms, lease_expires_at)

    monkeypatch.setattr(store, "claim_request", claim)

    # WHEN the invocation claims the request (in one of the batch's worker threads)
    processor.handler(Stream().next_event(), FakeContext(remaining_ms=4_000))

    # THEN the lease lasts the 4 s plus the 30 s margin, not Lambda's 15-minute maximum
    assert len(leases) == 1
    assert 33_000 <= leases[0] <= 34_000
