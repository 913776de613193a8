"""The lifecycle table and the decisions made over it: pure, no AWS."""

from __future__ import annotations

import pytest

from streamer.transitions import (
    RETRY,
    RETRY_CAP_MS,
    TERMINAL,
    TRANSITIONS,
    Event,
    Status,
    SweepAction,
    after_attempt,
    claims,
    ending,
    retry_delay_ms,
    sources,
    sweep_action,
    target,
    transition,
)


def reachable(start: Status | None) -> set[Status]:
    seen: set[Status] = set()
    frontier = [start]
    while frontier:
        status = frontier.pop()
        for row in TRANSITIONS:
            if row.source == status and row.target not in seen:
                seen.add(row.target)
                frontier.append(row.target)
    return seen


def test_every_status_can_be_reached_from_a_new_request():
    assert reachable(None) == set(Status)


@pytest.mark.parametrize("status", sorted(set(Status) - TERMINAL))
def test_every_request_that_has_not_ended_can_still_end(status):
    assert reachable(status) & TERMINAL


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_an_ended_request_never_changes_status(status):
    assert {row.target for row in TRANSITIONS if row.source == status} == {status}


def test_the_table_has_one_row_per_status_and_event():
    pairs = [(row.source, row.event) for row in TRANSITIONS if row.source is not None]
    assert len(pairs) == len(set(pairs))


def test_every_event_has_a_row():
    assert {row.event for row in TRANSITIONS} == set(Event)


def test_stored_statuses_keep_their_strings():
    assert [str(s) for s in Status] == [
        "PENDING",
        "PROCESSING",
        "RETRYING",
        "WAITING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
    ]
    assert f"{Status.PENDING}" == "PENDING" and Status.PENDING == "PENDING"


@pytest.mark.parametrize("status", [*Status, None])
def test_only_a_pending_request_is_claimed_from_its_stream_record(status):
    assert claims(status) == (status == "PENDING")


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_each_end_has_one_event(status):
    assert target(ending(status)) == status
    assert transition(Status.PROCESSING, ending(status)) is not None


def test_a_request_does_not_end_in_a_running_status():
    with pytest.raises(ValueError):
        ending(Status.PROCESSING)


def test_cancel_ends_a_request_from_any_status_it_runs_or_waits_in():
    assert sources(Event.CANCEL) == set(Status) - TERMINAL


DUE = {"due_at": 100, "now": 100, "attempt": 1, "max_attempts": 3, "cancel_requested": False}


@pytest.mark.parametrize(
    "status, changes, action",
    [
        ("PENDING", {}, SweepAction.REDRIVE),
        ("RETRYING", {}, SweepAction.REDRIVE),
        ("PROCESSING", {}, SweepAction.REDRIVE),
        ("PROCESSING", {"attempt": 3}, SweepAction.TIME_OUT),
        ("PROCESSING", {"cancel_requested": True}, SweepAction.CANCEL),
        ("PROCESSING", {"attempt": 3, "cancel_requested": True}, SweepAction.CANCEL),
        ("COMPLETED", {}, SweepAction.RESEND),
        ("FAILED", {}, SweepAction.RESEND),
        ("CANCELLED", {}, SweepAction.RESEND),
        ("WAITING", {}, SweepAction.SKIP),
        ("PROCESSING", {"due_at": 101}, SweepAction.SKIP),
        ("COMPLETED", {"due_at": None}, SweepAction.SKIP),
    ],
)
def test_what_the_sweeper_does_with_a_due_request(status, changes, action):
    assert sweep_action(status, **{**DUE, **changes}) == action


@pytest.mark.parametrize(
    "outcome, status, attempt, event",
    [
        ("COMPLETED", "PROCESSING", 1, Event.COMPLETE),
        ("FAILED", "PROCESSING", 1, Event.FAIL),
        ("CANCELLED", "WAITING", 1, Event.CANCEL),
        ("WAITING", "PROCESSING", 1, Event.WAIT),
        ("WAITING", "WAITING", 1, Event.WAIT),
        (RETRY, "PROCESSING", 1, Event.RETRY),
        (RETRY, "PROCESSING", 2, Event.RETRY),
        (RETRY, "PROCESSING", 3, Event.FAIL),
        # A poll that failed temporarily waits on, whatever its attempt: its deadline ends it.
        (RETRY, "WAITING", 3, Event.WAIT),
    ],
)
def test_what_an_attempt_writes_for_its_outcome(outcome, status, attempt, event):
    decided = after_attempt(outcome, status, attempt=attempt, max_attempts=3)
    assert decided == event
    assert transition(status, decided) is not None


def test_retry_delays_grow_with_the_attempt_up_to_the_cap():
    top = [retry_delay_ms(attempt, rng=lambda: 0.999999) for attempt in (1, 2, 3, 10)]
    assert top[0] < top[1] < top[2] and top[3] < RETRY_CAP_MS
    assert retry_delay_ms(1, rng=lambda: 0.0) == 0
