"""The per-connection rate limit: a bucket in each router instance, shared on the connection
record by one conditional write per `burst` admitted messages."""

from __future__ import annotations

import pytest

from streamer import store
from streamer.ratelimit import ConnectionRateLimiter
from streamer.store.errors import StoreUnavailable
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


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Every read of a connection record."""
    made: list[str] = []
    real = store.get_connection

    def counted(connection_id, **kwargs):
        made.append(connection_id)
        return real(connection_id, **kwargs)

    monkeypatch.setattr(store, "get_connection", counted)
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


def test_a_client_under_the_rate_pays_one_write_per_burst_of_messages_and_no_read(
    alice, writes, reads
):
    # GIVEN a router instance that never saw the connection
    limiter = ConnectionRateLimiter(BUCKET)

    # WHEN the client sends 30 messages, one every 150 ms (under 10 a second)
    for n in range(30):
        assert limiter.admit(alice, NOW + 150 * n).admitted

    # THEN every third message (the bucket holds 3) reported three: 10 writes, no read
    assert writes == [True] * 10
    assert reads == []


def test_a_flood_is_refused_without_a_store_call(alice, writes, reads):
    limiter = ConnectionRateLimiter(BUCKET)

    verdicts = [limiter.admit(alice, NOW).admitted for _ in range(100)]

    # a bucket's worth admitted and reported in one write; the 97 refused cost nothing
    assert verdicts == [True] * 3 + [False] * 97
    assert writes == [True]
    assert reads == []


def test_the_shared_bucket_follows_the_algorithm(alice):
    limiter = ConnectionRateLimiter(BUCKET)

    for _ in range(3):
        limiter.admit(alice, NOW)
    after_first_report = store.get_connection(alice).rate_tat
    for ms in (300, 400, 500):
        limiter.admit(alice, NOW + ms)
    after_second_report = store.get_connection(alice).rate_tat
    for ms in (5_000, 5_000, 5_000):
        limiter.admit(alice, NOW + ms)

    # full bucket: now + 3 intervals; not full: the shared time + 3 intervals (in µs)
    assert after_first_report == us(NOW + 300)
    assert after_second_report == us(NOW + 600)
    assert store.get_connection(alice).rate_tat == us(NOW + 5_300)


def test_an_instance_learns_another_instances_messages_when_it_reports(alice):
    # GIVEN two router instances serving the same connection
    first, second = ConnectionRateLimiter(BUCKET), ConnectionRateLimiter(BUCKET)

    # WHEN each admits a bucket's worth at once (a spread: one extra burst, the bound)
    spread = [first.admit(alice, NOW).admitted for _ in range(3)]
    spread += [second.admit(alice, NOW).admitted for _ in range(3)]

    # THEN the second's report brought back both: it refuses until six tokens are
    # back, less the burst (600 ms - 200 ms), where alone it would admit at +100 ms
    assert spread == [True] * 6
    assert store.get_connection(alice).rate_tat == us(NOW + 600)
    refused = second.admit(alice, NOW + 100)
    assert not refused.admitted and refused.retry_after_ms == 300
    assert second.admit(alice, NOW + 400).admitted


def test_a_wrong_guess_costs_one_more_write_not_a_wrong_count(alice, writes):
    # GIVEN a shared bucket another instance charged far ahead
    other = ConnectionRateLimiter(BUCKET)
    for _ in range(3):
        other.admit(alice, NOW)
    writes.clear()

    # WHEN an instance whose own view is full reports three messages spaced out
    limiter = ConnectionRateLimiter(BUCKET)
    for ms in (0, 150, 300):
        limiter.admit(alice, NOW + ms)

    # THEN its refill was refused (the bucket is not full) and the charge applied
    assert writes == [False, True]
    assert store.get_connection(alice).rate_tat == us(NOW + 600)


def test_an_outage_leaves_each_instance_its_own_limit(alice, monkeypatch):
    # GIVEN DynamoDB refusing every write
    def unavailable(*args, **kwargs):
        raise StoreUnavailable("ProvisionedThroughputExceededException")

    monkeypatch.setattr(store, "refill_bucket", unavailable)
    monkeypatch.setattr(store, "charge_bucket", unavailable)
    limiter = ConnectionRateLimiter(BUCKET)

    # WHEN the connection floods  THEN the instance's bucket still admits 3 and refuses
    assert [limiter.admit(alice, NOW).admitted for _ in range(5)] == [True] * 3 + [False] * 2
    assert limiter.admit(alice, NOW + 100).admitted


def test_a_connection_without_a_record_is_admitted(test_app):
    limiter = ConnectionRateLimiter(BUCKET)

    assert [limiter.admit("conn-gone", NOW).admitted for _ in range(4)] == [True] * 3 + [False]


def test_a_message_admitted_while_a_report_is_under_way_is_reported_once(alice, monkeypatch):
    # GIVEN an instance whose third message starts a report
    limiter = ConnectionRateLimiter(BUCKET)
    real_refill = store.refill_bucket
    during: list[bool] = []

    def another_message_meanwhile(*args, **kwargs):
        monkeypatch.setattr(store, "refill_bucket", real_refill)
        during.append(limiter.admit(alice, NOW + 200).admitted)
        return real_refill(*args, **kwargs)

    monkeypatch.setattr(store, "refill_bucket", another_message_meanwhile)

    # WHEN a fourth message of the connection arrives while the write is under way
    for ms in (0, 100, 150):
        limiter.admit(alice, NOW + ms)

    # THEN it is admitted and left out of this report (three tokens from NOW)...
    assert during == [True]
    assert store.get_connection(alice).rate_tat == us(NOW + 300)
    # ... and counted by the next: two more messages make three unreported, a report
    for ms in (1_000, 1_000):
        limiter.admit(alice, NOW + ms)
    assert store.get_connection(alice).rate_tat == us(NOW + 1_200)
