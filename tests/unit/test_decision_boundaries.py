"""Every documented boundary, tested at, just under and just over it (pure tests).

The numbers come from where they are defined once (streamer.config,
streamer.protocol, streamer.transitions); a test that restated them would not
catch a changed constant, so each constant is also pinned to its documented
value here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamer import application, config, protocol, transitions
from streamer.admission import Caller
from streamer.application import ApplicationActions
from streamer.config import Settings
from streamer.errors import ErrorCode, StreamerError
from streamer.events import Identity
from streamer.execution import checked_result
from streamer.handlers import Handler
from streamer.protocol import ClientMessage, parse_client_message
from streamer.transitions import (
    Event,
    Status,
    SweepAction,
    after_attempt,
    claim_due_at,
    sweep_action,
)

KIB = 1024


# The documented values, defined once


def test_the_documented_limits_keep_their_values() -> None:
    assert config.MAX_MESSAGE_BYTES == 128 * KIB  # API Gateway's WebSocket frame limit
    assert config.MAX_RESULT_BYTES == 100 * KIB
    assert config.CONNECTION_TTL_S == 2 * 3600 + 600  # API Gateway's 2-hour maximum + margin
    assert config.PICKUP_TIMEOUT_MS == 120_000
    assert protocol.MAX_JSON_DEPTH == 32
    assert (protocol.MAX_METADATA_ENTRIES, protocol.MAX_METADATA_KEY) == (32, 64)
    assert protocol.MAX_METADATA_VALUE == 1024


def test_the_documented_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.async_threshold_ms == 5000
    assert settings.sync_timeout_ms == 25000
    assert settings.progress_flush_ms == 200
    assert settings.progress_immediate_percent == 90.0
    assert settings.progress_persist_ms == 1000
    assert settings.request_retention_s == 7 * 24 * 3600
    assert settings.max_attempts == 3
    assert settings.lease_margin_s == 30
    assert settings.jwt_leeway_s == 30
    assert settings.max_active_requests == 20
    assert settings.rate_limit_per_s == 20
    assert settings.rate_limit_burst is None
    assert settings.watch_token_ttl_s == 1800
    assert settings.topic_retention_s == 24 * 3600
    assert settings.poller_batch_size == 20
    assert settings.processor_concurrency == 8
    assert settings.tracing is False
    assert settings.log_level == "INFO"
    assert settings.app_module == config.DEFAULT_APP == "streamer.demo"
    assert (settings.connections_table, settings.requests_table) == (
        "streamer-connections",
        "streamer-requests",
    )
    assert settings.subscriptions_table == "streamer-subscriptions"
    assert settings.region == "us-east-1"
    assert settings.allowed_tenants is None


def test_settings_are_clamped_to_what_the_runtime_can_use() -> None:
    def read(name: str, value: str) -> Settings:
        return Settings.from_env({name: value})

    assert read(config.RATE_LIMIT_PER_S, "-5").rate_limit_per_s == 0
    assert read(config.RATE_LIMIT_PER_S, "1000000").rate_limit_per_s == 1_000_000
    assert read(config.RATE_LIMIT_PER_S, "1000001").rate_limit_per_s == 1_000_000
    assert read(config.RATE_LIMIT_BURST, "0").rate_limit_burst is None
    assert read(config.RATE_LIMIT_BURST, "-1").rate_limit_burst is None
    assert read(config.RATE_LIMIT_BURST, "1").rate_limit_burst == 1
    assert read(config.POLLER_BATCH_SIZE, "0").poller_batch_size == 1
    assert read(config.POLLER_BATCH_SIZE, "2").poller_batch_size == 2
    assert read(config.LOG_LEVEL, "debug").log_level == "DEBUG"
    assert read(config.ALLOWED_TENANTS, " t1, ,t2 ").allowed_tenants == frozenset({"t1", "t2"})
    assert read(config.REGION, "eu-west-1").region == "eu-west-1"
    assert Settings.from_env({"AWS_DEFAULT_REGION": "ap-south-1"}).region == "ap-south-1"
    assert read(config.PROGRESS_IMMEDIATE_PERCENT, "75.5").progress_immediate_percent == 75.5


# The sync/async threshold (docs/protocol.md section 4)


class Estimated(Handler):
    def __init__(self, ms: int) -> None:
        self.estimated_duration = ms / 1000


@pytest.mark.parametrize(("ms", "is_async"), [(4999, False), (5000, False), (5001, True)])
def test_the_default_threshold_and_one_ms_either_side(ms: int, is_async: bool) -> None:
    threshold = Settings.from_env({}).async_threshold_ms
    assert application.runs_async(Estimated(ms), threshold) is is_async


# Frames: 128 KiB (API Gateway's WebSocket frame limit)


def frame_of(size: int) -> bytes:
    head = b'{"action":"echo","payload":{"pad":"'
    tail = b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_a_frame_of_exactly_128_kib_is_read() -> None:
    assert parse_client_message(frame_of(128 * KIB)).action == "echo"


def test_a_frame_one_byte_over_128_kib_is_payload_too_large() -> None:
    with pytest.raises(StreamerError) as raised:
        parse_client_message(frame_of(128 * KIB + 1))
    assert raised.value.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert raised.value.details == {"limit_bytes": 128 * KIB}


def test_the_frame_limit_counts_utf8_bytes_not_characters() -> None:
    text = frame_of(128 * KIB).decode()
    assert parse_client_message(text).action == "echo"
    with pytest.raises(StreamerError) as raised:
        parse_client_message(text.replace("x", "é", 1))
    assert raised.value.code is ErrorCode.PAYLOAD_TOO_LARGE


# Results: 100 KiB


def result_of(size: int) -> str:
    return "x" * (size - 2)  # a JSON string: two quotes around it


def test_a_result_of_exactly_100_kib_completes() -> None:
    outcome = checked_result(result_of(100 * KIB))
    assert outcome.status == "COMPLETED"


def test_a_result_one_byte_over_100_kib_fails_payload_too_large() -> None:
    outcome = checked_result(result_of(100 * KIB + 1))
    assert outcome.status == "FAILED"
    assert outcome.error is not None
    assert outcome.error["code"] == "PAYLOAD_TOO_LARGE"
    assert outcome.error["details"] == {"size_bytes": 100 * KIB + 1, "limit_bytes": 100 * KIB}


# Metadata and identifiers


def test_metadata_limits_at_and_over_each_bound() -> None:
    def parse(metadata: dict[str, str]) -> ClientMessage:
        return parse_client_message(json.dumps({"action": "a", "metadata": metadata}))

    assert len(parse({f"k{i}": "v" for i in range(32)}).metadata) == 32
    assert parse({"k" * 64: "v" * 1024}).metadata
    for too_much in (
        {f"k{i}": "v" for i in range(33)},
        {"k" * 65: "v"},
        {"k": "v" * 1025},
    ):
        with pytest.raises(StreamerError) as raised:
            parse(too_much)
        assert raised.value.code is ErrorCode.PAYLOAD_TOO_LARGE


@pytest.mark.parametrize(("field", "longest"), [("action", 64), ("id", 128)])
def test_names_at_their_length_limit_are_read_and_one_longer_are_not(
    field: str, longest: int
) -> None:
    message = {"action": "a", field: "x" * longest}
    assert getattr(parse_client_message(json.dumps(message)), field) == "x" * longest
    message[field] = "x" * (longest + 1)
    with pytest.raises(StreamerError) as raised:
        parse_client_message(json.dumps(message))
    assert raised.value.code is ErrorCode.INVALID_MESSAGE


def nested(levels: int) -> str:
    """A frame whose payload nests objects down to `levels` (the frame itself is level 1)."""
    inner = levels - 1
    return '{"action":"a","payload":' + '{"a":' * (inner - 1) + "{}" + "}" * (inner - 1) + "}"


def test_nesting_of_exactly_the_limit_is_read_and_one_deeper_is_not() -> None:
    assert parse_client_message(nested(32)).action == "a"
    with pytest.raises(StreamerError, match="nests deeper than 32"):
        parse_client_message(nested(33))


# Leases (the sweeper's due index) and retry limits


def sweep(status: Status, due_at: int | None, now: int, **changes: Any) -> SweepAction:
    facts: dict[str, Any] = {"attempt": 1, "max_attempts": 3, "cancel_requested": False}
    facts.update(changes)
    return sweep_action(status, due_at=due_at, now=now, **facts)


def test_a_lease_expires_at_its_due_time_not_a_millisecond_before() -> None:
    assert sweep(Status.PROCESSING, due_at=1000, now=999) is SweepAction.SKIP
    assert sweep(Status.PROCESSING, due_at=1000, now=1000) is SweepAction.REDRIVE
    assert sweep(Status.PROCESSING, due_at=1000, now=1001) is SweepAction.REDRIVE


def test_a_running_request_due_before_its_lease_ends_is_postponed_until_it_ends() -> None:
    # due at its pickup time, its lease ending later: the worker is alive
    assert sweep(Status.PROCESSING, due_at=1000, now=1000, lease_expires_at=1001) is (
        SweepAction.POSTPONE
    )
    assert sweep(Status.PROCESSING, due_at=1000, now=1001, lease_expires_at=1001) is (
        SweepAction.REDRIVE
    )
    assert (
        sweep(Status.PROCESSING, due_at=0, now=5, lease_expires_at=9, cancel_requested=True)
        is SweepAction.POSTPONE
    )
    # only a running request has a lease to wait for
    assert sweep(Status.RETRYING, due_at=0, now=5, lease_expires_at=9) is SweepAction.REDRIVE


@pytest.mark.parametrize(
    ("due_at", "lease", "expected"),
    [(1000, 5000, 1000), (1000, 1000, 1000), (1000, 999, 999), (None, 5000, 5000)],
)
def test_a_claim_leaves_a_request_due_at_its_pickup_time_or_its_lease_end_if_sooner(
    due_at: int | None, lease: int, expected: int
) -> None:
    assert claim_due_at(due_at, lease) == expected


def test_a_request_with_no_due_time_is_never_swept() -> None:
    assert sweep(Status.PROCESSING, due_at=None, now=10**15) is SweepAction.SKIP


@pytest.mark.parametrize(
    ("attempt", "action"),
    [(2, SweepAction.REDRIVE), (3, SweepAction.TIME_OUT), (4, SweepAction.TIME_OUT)],
)
def test_a_dead_worker_s_request_runs_again_until_its_last_attempt(
    attempt: int, action: SweepAction
) -> None:
    assert sweep(Status.PROCESSING, due_at=0, now=0, attempt=attempt) is action


def test_a_request_out_of_attempts_but_asked_to_stop_ends_cancelled() -> None:
    assert (
        sweep(Status.PROCESSING, due_at=0, now=0, attempt=3, cancel_requested=True)
        is SweepAction.CANCEL
    )


@pytest.mark.parametrize(("attempt", "event"), [(2, Event.RETRY), (3, Event.FAIL), (4, Event.FAIL)])
def test_a_failed_attempt_is_retried_until_the_last_one(attempt: int, event: Event) -> None:
    assert after_attempt("RETRY", "PROCESSING", attempt=attempt, max_attempts=3) is event


def test_retry_delays_at_the_base_and_the_cap() -> None:
    top = 1 - 2**-53  # the largest float random.random() returns
    assert transitions.retry_delay_ms(1, lambda: top) == 999
    assert transitions.retry_delay_ms(0, lambda: top) == 999
    assert transitions.retry_delay_ms(2, lambda: 0.5) == 1000
    assert transitions.retry_delay_ms(7, lambda: top) == 59_999
    assert transitions.retry_delay_ms(8, lambda: top) == 59_999
    assert transitions.retry_delay_ms(3, lambda: 0.0) == 0


def test_poll_backoff_doubles_per_failure_from_the_interval_up_to_the_cap() -> None:
    lowest, top = (lambda: 0.0), (lambda: 1.0)
    assert transitions.poll_backoff_ms(1000, 0, top) == 1000
    assert transitions.poll_backoff_ms(1000, 1, top) == 1000
    assert transitions.poll_backoff_ms(1000, 2, top) == 2000
    assert transitions.poll_backoff_ms(1000, 3, top) == 4000
    assert transitions.poll_backoff_ms(1000, 3, lowest) == 2000
    assert transitions.poll_backoff_ms(1000, 30, top) == 300_000
    assert transitions.poll_backoff_ms(1000, 30, lowest) == 150_000
    assert transitions.poll_backoff_ms(400_000, 5, lowest) == 400_000
    assert transitions.poll_backoff_ms(1000, 3, lambda: 0.5) == 3000


def test_rows_give_each_source_its_own_row_and_keep_the_status_without_a_target() -> None:
    made = transitions._rows(
        (Status.PENDING, Status.WAITING), Event.REPORT, None, transitions.Guard.SAME_SEQ
    )
    assert made == [
        transitions.Transition(
            Status.PENDING, Event.REPORT, Status.PENDING, frozenset({transitions.Guard.SAME_SEQ})
        ),
        transitions.Transition(
            Status.WAITING, Event.REPORT, Status.WAITING, frozenset({transitions.Guard.SAME_SEQ})
        ),
    ]


# The per-user active cap, and TTLs of what is stored


ALICE = Caller(connection_id="c-1", identity=Identity("alice", "t1"), endpoint="https://e")


def actions(**settings: Any) -> ApplicationActions:
    return ApplicationActions(Settings("c", "r", "s", "us-east-1", **settings), {}, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("active", "at_cap"), [(19, False), (20, True), (21, True)])
def test_a_user_at_the_active_cap_may_start_no_more(
    monkeypatch: pytest.MonkeyPatch, active: int, at_cap: bool
) -> None:
    monkeypatch.setattr(application.store, "count_active", lambda owner: active)
    assert actions(max_active_requests=20)._at_active_cap(ALICE) is at_cap


def test_a_cap_of_zero_is_no_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(application.store, "count_active", lambda owner: 10**6)
    assert actions(max_active_requests=0)._at_active_cap(ALICE) is False


def test_a_request_is_kept_for_the_retention_and_picked_up_within_the_pickup_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(application, "now_ms", lambda: 1_700_000_000_999)
    item = actions(request_retention_s=3600)._new_item(
        ClientMessage(action="a", id="r-1"),
        {},
        Estimated(9000),
        ALICE,
        kind="async",
        status="PENDING",
    )
    assert item.ttl == 1_700_000_000 + 3600
    assert item.due_at == 1_700_000_000_999 + config.PICKUP_TIMEOUT_MS
    assert item.max_attempts == 3


def test_asking_for_the_end_of_a_running_status_or_one_target_of_many_is_refused() -> None:
    with pytest.raises(ValueError) as raised:
        transitions.ending("PENDING")
    assert str(raised.value) == "'PENDING' is not a status a request ends in"
    with pytest.raises(ValueError) as raised:
        transitions.target(Event.CREATE)
    assert str(raised.value) == "create has several targets; ask `transition` with the source"


def test_a_cap_of_one_is_reached_by_one_active_request(monkeypatch: pytest.MonkeyPatch) -> None:
    counted: list[str] = []
    monkeypatch.setattr(application.store, "count_active", lambda owner: counted.append(owner) or 1)
    assert actions(max_active_requests=1)._at_active_cap(ALICE) is True
    assert counted == [ALICE.owner]
