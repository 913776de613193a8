"""The condition of each requests-table write, as DynamoDB receives it (pure: nothing is sent).

`streamer.store.conditions` derives each write's condition from the lifecycle
table. These tests read the built condition expression, so a write that lost
one of its checks (the claim's "status is PENDING" above all) is caught here
without a table; tests/unit/test_transitions_store.py applies the same writes
to moto.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from streamer.store.conditions import Held, condition, moves
from streamer.transitions import Event


def rendered(expression: Any) -> str:
    """The expression with its name and value placeholders filled in."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    text = expression.serialize(names, values)
    by_placeholder = {placeholder: name for name, placeholder in names.items()}
    text = re.sub(r"#\d+", lambda m: by_placeholder[m.group(0)], text)

    def value(match: re.Match[str]) -> str:
        ((kind, raw),) = values[match.group(0)].items()
        return str(raw) if kind != "S" else f"'{raw}'"

    return re.sub(r":\d+", value, text)


def fenced(expression: str) -> str:
    """`expression` with the epoch fence of a writer that read a request never taken over."""
    return f"({expression} AND attribute_not_exists (epoch))"


def test_a_claim_is_written_only_on_a_pending_request() -> None:
    # Without the status check two processors could run one request, or a
    # finished request could run again when its stream record is retried.
    assert rendered(condition(Event.CLAIM, Held(attempt=2))) == fenced(
        "(status IN ('PENDING') AND attempt = 2)"
    )


def test_a_claim_is_written_only_by_the_holder_of_the_attempt_it_read() -> None:
    assert "attempt = 7" in rendered(condition(Event.CLAIM, Held(attempt=7)))


def test_a_claim_moves_the_request_to_processing() -> None:
    (action,) = moves(Event.CLAIM)
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    assert action.serialize(names, values) == "#0 = :0"
    assert names == {"status": "#0"}
    assert values == {":0": {"S": "PROCESSING"}}


def test_a_progress_report_keeps_the_status_and_stops_once_cancel_is_asked() -> None:
    assert moves(Event.REPORT) == []
    assert rendered(condition(Event.REPORT, Held(attempt=1))) == fenced(
        "((status IN ('PROCESSING', 'WAITING') AND "
        "(attribute_not_exists (cancel_requested) OR cancel_requested = False)) AND attempt = 1)"
    )


def test_a_new_request_is_written_only_where_none_exists() -> None:
    assert rendered(condition(Event.CREATE, Held())) == "attribute_not_exists (request_key)"


def test_a_stale_sync_run_is_taken_over_only_when_it_is_sync_and_older_than_the_bound() -> None:
    assert rendered(condition(Event.TAKE_OVER, Held(stale_before=5000))) == fenced(
        "(status IN ('PROCESSING') AND (kind = 'sync' AND updated_at < 5000))"
    )


def test_a_redrive_checks_the_attempt_and_the_due_time_it_read() -> None:
    assert rendered(condition(Event.REDRIVE, Held(attempt=3, due_at=900))) == fenced(
        "((status IN ('PENDING', 'PROCESSING', 'RETRYING') AND attempt = 3) AND due_at = 900)"
    )


def test_the_complete_of_an_ended_request_is_marked_sent_only_if_nothing_followed_it() -> None:
    assert rendered(condition(Event.COMPLETE_SENT, Held(seq=12))) == fenced(
        "(status IN ('CANCELLED', 'COMPLETED', 'FAILED') AND seq = 12)"
    )


def test_a_writer_narrows_the_statuses_to_those_it_read() -> None:
    held = Held(attempt=1, statuses=("PROCESSING",))
    assert rendered(condition(Event.FAIL, held)) == fenced(
        "((status IN ('PROCESSING', 'WAITING') AND attempt = 1) AND status IN ('PROCESSING'))"
    )


@pytest.mark.parametrize(
    "event",
    [Event.CLAIM, Event.REDRIVE, Event.COMPLETE_SENT, Event.TAKE_OVER],
)
def test_a_write_whose_check_has_no_value_is_refused_before_it_is_sent(event: Event) -> None:
    with pytest.raises(ValueError, match="holds no value"):
        condition(event, Held())


def test_a_table_row_from_no_request_cannot_share_a_condition_with_a_status() -> None:
    from streamer.store import conditions
    from streamer.transitions import Status

    with pytest.raises(ValueError) as raised:
        conditions._in({None, Status.PENDING})
    assert str(raised.value) == "a row from no request shares its guards with a row from a status"


def test_a_write_holds_only_at_the_epoch_its_writer_read() -> None:
    # After another region took the request over (epoch 1 to 2), a writer that
    # read it at epoch 1 is refused: the old runner cannot run or end it again.
    assert rendered(condition(Event.CLAIM, Held(attempt=2, epoch=2))) == (
        "((status IN ('PENDING') AND attempt = 2) AND epoch = 2)"
    )


def test_every_write_of_an_existing_request_is_fenced_by_its_epoch() -> None:
    from streamer.transitions import Event as Events

    creating = {Events.CREATE}
    held = Held(attempt=1, due_at=1, seq=1, stale_before=1, epoch=5)
    for event in set(Events) - creating:
        assert rendered(condition(event, held)).endswith("AND epoch = 5)"), event
    assert "epoch" not in rendered(condition(Event.CREATE, held))
