"""With the per-user cap on, a request is watched by the cap's index alone until something
moves it on by a time (`keys.watched_by`): the sweeper scans that index for it."""

from __future__ import annotations

import pytest

from streamer import config, runtime, schema, store
from streamer.config import PICKUP_TIMEOUT_MS
from streamer.models import owner_key
from streamer.store import requests as request_store
from streamer.sweeper import UNKEYED, sweep
from tests.functional.helpers import Client

OWNER = owner_key("t1", "alice")


def queue(*request_ids: str, user: str = "alice") -> Client:
    client = Client(f"conn-{user}", user=user, tenant="t1")
    client.connect()
    for request_id in request_ids:
        client.send({"action": "generate_report", "id": request_id, "payload": {"pages": 1}})
    return client


def test_a_request_queued_under_the_cap_is_in_the_cap_s_index_only(test_app, management):
    queue("r-1")

    item = store.get_request(OWNER, "r-1")

    assert item.active_owner == OWNER and item.due_at is not None
    assert item.due_region is None and item.watched_by_cap


def test_without_the_cap_a_request_is_in_the_due_index_only(test_app, management, monkeypatch):
    monkeypatch.setenv(config.MAX_ACTIVE_REQUESTS, "0")
    runtime.reset()
    queue("r-1")

    item = store.get_request(OWNER, "r-1")

    assert item.active_owner is None and item.due_region == "us-east-1"


def test_a_claim_whose_lease_ends_after_the_pickup_time_leaves_it_in_the_cap_s_index_only(
    test_app, management
):
    queue("r-1")
    item = store.get_request(OWNER, "r-1")
    pickup = int(item.due_at)

    assert store.claim_request(item, 1_000, pickup + 60_000)

    item = store.get_request(OWNER, "r-1")
    assert item.status == "PROCESSING" and item.due_region is None
    assert int(item.due_at) == pickup


def test_a_claim_whose_lease_ends_first_moves_its_time_and_still_does_not_key_it(
    test_app, management
):
    queue("r-1")
    item = store.get_request(OWNER, "r-1")

    assert store.claim_request(item, 1_000, 1_010)

    item = store.get_request(OWNER, "r-1")
    assert int(item.due_at) == 1_010 and item.due_region is None


def test_a_request_never_picked_up_is_found_by_the_scan_and_keyed_by_its_redrive(
    test_app, management
):
    # GIVEN a request whose stream record was lost: it stays PENDING
    queue("r-1")
    pickup = int(store.get_request(OWNER, "r-1").due_at)

    # WHEN the sweeper runs before and then after its pickup time
    early = sweep("us-east-1", runtime.current().delivery, now=pickup - 1)
    late = sweep("us-east-1", runtime.current().delivery, now=pickup)

    # THEN only the second re-drives it, and from then on the due index has it
    assert early.redriven == [] and late.redriven == ["r-1"] and late.failed == []
    item = store.get_request(OWNER, "r-1")
    assert item.status == "PENDING" and item.due_region == "us-east-1"
    assert int(item.due_at) == pickup + PICKUP_TIMEOUT_MS
    # and the scan no longer lists it: one reader for each stalled request
    assert request_store.unkeyed_due_items("us-east-1", pickup + 10 * PICKUP_TIMEOUT_MS) == []


def test_the_scan_lists_only_its_own_region_s_requests(test_app, management):
    queue("r-1")
    pickup = int(store.get_request(OWNER, "r-1").due_at)

    assert request_store.unkeyed_due_items("eu-west-1", pickup) == []
    [found] = request_store.unkeyed_due_items("us-east-1", pickup)
    assert found.request_id == "r-1"


@pytest.mark.parametrize("segments", [1, 3, 8])
def test_every_segment_of_the_scan_is_read(test_app, management, segments):
    request_ids = [f"r-{n}" for n in range(12)]
    queue(*request_ids)
    pickup = max(int(store.get_request(OWNER, r).due_at) for r in request_ids)

    found = request_store.unkeyed_due_items("us-east-1", pickup, limit=100, segments=segments)

    assert sorted(item.request_id for item in found) == sorted(request_ids)


def test_the_scan_takes_at_most_its_limit(test_app, management):
    request_ids = [f"r-{n}" for n in range(6)]
    queue(*request_ids)
    pickup = max(int(store.get_request(OWNER, r).due_at) for r in request_ids)

    found = request_store.unkeyed_due_items("us-east-1", pickup, limit=4, segments=2)

    assert len(found) == 4


def test_a_failed_scan_is_counted_and_the_due_index_is_still_swept(
    test_app, management, monkeypatch
):
    # GIVEN one request keyed in the due index (the cap off when it was queued) and one not
    monkeypatch.setenv(config.MAX_ACTIVE_REQUESTS, "0")
    runtime.reset()
    queue("r-keyed")
    monkeypatch.setenv(config.MAX_ACTIVE_REQUESTS, "20")
    runtime.reset()
    queue("r-watched", user="bob")
    pickup = max(
        int(store.get_request(OWNER, "r-keyed").due_at),
        int(store.get_request(owner_key("t1", "bob"), "r-watched").due_at),
    )

    # WHEN the scan of the cap's index fails
    def unavailable(*_, **__):
        raise store.StoreUnavailable("scan throttled")

    monkeypatch.setattr(store, "unkeyed_due_items", unavailable)
    report = sweep("us-east-1", runtime.current().delivery, now=pickup)

    # THEN the keyed request is re-driven all the same, and the scan counts as one failure
    assert report.redriven == ["r-keyed"] and report.failed == [UNKEYED]


def test_the_scan_filters_only_on_what_the_cap_s_index_projects():
    """A scan of an index reads only the attributes it projects: a filter on another one
    keeps nothing (moto, too, projects each entry before it applies the filter)."""
    index = schema.index_of(schema.REQUESTS, schema.REQUESTS_BY_ACTIVE_OWNER)
    readable = {index.hash_key, schema.REQUESTS.hash_key, *index.included}

    assert set(request_store.UNKEYED_DUE_NAMES.values()) <= readable
    assert index.projection == "INCLUDE"
