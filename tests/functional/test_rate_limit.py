"""The per-connection token bucket (GCRA on the connection record)."""

from __future__ import annotations

import pytest

from streamer import store
from streamer.ratelimit import ConnectionRateLimiter
from tests.functional.helpers import Client
from tests.unit.test_rate_limit import BUCKET, NOW, us


@pytest.fixture
def alice(alice: Client) -> str:
    """Here alice is her connection's id."""
    return alice.connection_id


@pytest.fixture
def writes(monkeypatch) -> list[bool]:
    """Every conditional write the limiter makes, True when it applied."""
    made: list[bool] = []
    real = store.connections.conditional

    def counted(call):
        applied = real(call)
        made.append(applied)
        return applied

    monkeypatch.setattr(store.connections, "conditional", counted)
    return made


def test_a_burst_is_admitted_then_refused_until_a_token_comes_back(alice):
    limiter = ConnectionRateLimiter(BUCKET)

    at_once = [limiter.admit(alice, NOW) for _ in range(4)]

    assert [v.admitted for v in at_once] == [True, True, True, False]
    assert at_once[3].retry_after_ms == 100
    assert not limiter.admit(alice, NOW + 99).admitted
    assert limiter.admit(alice, NOW + 100).admitted
    assert not limiter.admit(alice, NOW + 100).admitted
    # a full second later the bucket is full again: a whole burst
    assert [limiter.admit(alice, NOW + 1100).admitted for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


def test_the_stored_time_follows_the_algorithm(alice):
    limiter = ConnectionRateLimiter(BUCKET)

    limiter.admit(alice, NOW)
    after_one = store.get_connection(alice).rate_tat
    limiter.admit(alice, NOW + 50)
    after_two = store.get_connection(alice).rate_tat
    limiter.admit(alice, NOW + 5_000)

    # full bucket: now + interval; not full: the previous time + interval (in µs)
    assert (after_one, after_two) == (us(NOW + 100), us(NOW + 200))
    assert store.get_connection(alice).rate_tat == us(NOW + 5_100)


def test_a_client_sending_under_the_rate_pays_one_write_a_message(alice, writes):
    # GIVEN a router process that never saw the connection (no guess)
    limiter = ConnectionRateLimiter(BUCKET)

    # WHEN the client sends a message every 2 seconds
    for second in range(5):
        assert limiter.admit(alice, NOW + 2_000 * second).admitted

    # THEN each message was one conditional write, and each applied
    assert writes == [True] * 5


def test_a_burst_on_one_router_pays_one_write_a_message(alice, writes):
    limiter = ConnectionRateLimiter(BUCKET)

    assert all(limiter.admit(alice, NOW + ms).admitted for ms in (0, 10, 20))

    assert writes == [True] * 3


def test_the_limit_holds_across_router_instances(alice, writes):
    # GIVEN two router processes serving the same connection in turn
    routers = [ConnectionRateLimiter(BUCKET), ConnectionRateLimiter(BUCKET)]

    # WHEN six messages arrive at one instant
    verdicts = [routers[i % 2].admit(alice, NOW).admitted for i in range(6)]

    # THEN the bucket of 3 admitted 3; a wrong guess costs one more write, not a wrong answer
    assert verdicts == [True, True, True, False, False, False]
    assert writes.count(True) == 3


def test_a_message_racing_another_of_the_connection_is_admitted(alice, monkeypatch):
    # GIVEN a full bucket, and a limiter about to take its first token
    limiter = ConnectionRateLimiter(BUCKET)
    other_router = ConnectionRateLimiter(BUCKET)
    real_refill = store.refill_bucket
    raced: list[bool] = []

    def another_message_gets_in_first(*args, **kwargs):
        monkeypatch.setattr(store, "refill_bucket", real_refill)
        raced.append(other_router.admit(alice, NOW).admitted)
        return real_refill(*args, **kwargs)

    monkeypatch.setattr(store, "refill_bucket", another_message_gets_in_first)

    # WHEN another router's message takes it first
    verdict = limiter.admit(alice, NOW)

    # THEN both are admitted, and both counted
    assert raced == [True] and verdict.admitted
    assert store.get_connection(alice).rate_tat == us(NOW + 200)


def test_a_connection_without_a_record_is_admitted(test_app):
    assert ConnectionRateLimiter(BUCKET).admit("conn-gone", NOW).admitted
