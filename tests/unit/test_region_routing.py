"""Where the store sends a request's writes: the model of its decider's table (nothing sent)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streamer import models
from streamer.models import RequestItem, bind_models, decider_of, requests_in
from streamer.regions import home_region

REGIONS = ("us-east-1", "eu-west-1")


@pytest.fixture
def bound() -> Iterator[None]:
    yield
    bind_models("c", "r", "s", "us-east-1")


def test_with_one_region_every_request_is_decided_there_without_hashing(bound, monkeypatch):
    bind_models("c", "r", "s", "eu-west-1")
    monkeypatch.setattr(models, "home_region", None)  # never called: it would fail

    assert decider_of("t1#alice") == "eu-west-1"
    assert requests_in("eu-west-1") is RequestItem


def test_with_two_regions_a_request_is_decided_at_its_owner_s_home(bound):
    bind_models("c", "r", "s", "eu-west-1", regions=REGIONS)
    owners = [f"t1#user-{n}" for n in range(20)]

    assert [decider_of(o) for o in owners] == [home_region(o, REGIONS) for o in owners]
    assert {decider_of(o) for o in owners} == set(REGIONS)


def test_another_region_s_table_is_a_model_of_its_own_made_once(bound):
    bind_models(
        "c", "requests", "s", "eu-west-1", regions=REGIONS, endpoints={"us-east-1": "http://e"}
    )
    east = requests_in("us-east-1")

    assert issubclass(east, RequestItem) and east is not RequestItem
    assert (east.Meta.table_name, east.Meta.region, east.Meta.host) == (
        "requests",
        "us-east-1",
        "http://e",
    )
    assert requests_in("us-east-1") is east
    # Its own connection, not the one `RequestItem` made for the own region.
    RequestItem._connection = object()
    assert east._connection is None


def test_a_region_without_an_endpoint_uses_the_sdk_default(bound):
    bind_models("c", "r", "s", "eu-west-1", regions=REGIONS)
    assert getattr(requests_in("us-east-1").Meta, "host", None) is None


def test_binding_again_forgets_the_other_regions_models(bound):
    bind_models("c", "r", "s", "eu-west-1", regions=REGIONS)
    before = requests_in("us-east-1")
    bind_models("c", "r2", "s", "eu-west-1", regions=REGIONS)

    after = requests_in("us-east-1")
    assert after is not before and after.Meta.table_name == "r2"
