"""The condition of each write to the requests table, built from the lifecycle table.

An event's rows (`streamer.transitions.TRANSITIONS`) become one DynamoDB
condition: the request is in one of the event's source statuses, and what
each row's guards check still holds. Rows of one event that share their
guards share one `status IN (...)` clause. The writer may narrow the sources
further to the statuses it read (`Held.statuses`), never widen them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import Any

from streamer.models import SYNC, RequestItem
from streamer.transitions import Event, Guard, Status, rows, target


@dataclass(frozen=True)
class Held:
    """What the writer read of a request and holds on to: the values its guards compare."""

    attempt: int | None = None
    due_at: int | None = None
    seq: int | None = None
    #: A sync request last updated before this time (ms) may be taken over.
    stale_before: int | None = None
    #: The statuses the writer read the request in, if it acts only on those.
    statuses: tuple[str, ...] | None = None
    #: The request's epoch the writer read (0: never taken over, no `epoch` stored).
    epoch: int = 0


def condition(event: Event, held: Held) -> Any:
    """The condition under which `event` may be written, for a writer holding `held`."""
    by_guards: dict[frozenset[Guard], set[Status | None]] = {}
    sources_of_event: set[Status | None] = set()
    for row in rows(event):
        by_guards.setdefault(row.guards, set()).add(row.source)
        sources_of_event.add(row.source)
    clauses = []
    for guards, sources in by_guards.items():
        clause = _in(sources)
        for guard in sorted(guards):
            clause = clause & _checked(guard, held)
        clauses.append(clause)
    written = reduce(or_, clauses)
    if held.statuses is not None:
        written = written & RequestItem.status.is_in(*held.statuses)
    if sources_of_event == {None}:
        # A write that creates the item: there is no epoch yet to check.
        return written
    return written & _at_epoch(held.epoch)


def _at_epoch(epoch: int) -> Any:
    """The item is at `epoch`: for 0, it has none (no takeover ever stored one)."""
    if epoch == 0:
        return RequestItem.epoch.does_not_exist()
    return RequestItem.epoch == epoch


def moves(event: Event) -> list[Any]:
    """The update action that sets the status `event` writes (none where it keeps the status)."""
    to = target(event)
    return [] if to is None else [RequestItem.status.set(to)]


def _in(sources: set[Status | None]) -> Any:
    if sources == {None}:
        return RequestItem.request_key.does_not_exist()
    if None in sources:
        raise ValueError("a row from no request shares its guards with a row from a status")
    return RequestItem.status.is_in(*sorted(sources))


def _checked(guard: Guard, held: Held) -> Any:
    if guard is Guard.NOT_CANCELLING:
        return RequestItem.cancel_requested.does_not_exist() | (
            RequestItem.cancel_requested == False  # noqa: E712 (a DynamoDB condition, not a test)
        )
    value = {
        Guard.SAME_ATTEMPT: held.attempt,
        Guard.SAME_DUE_AT: held.due_at,
        Guard.SAME_SEQ: held.seq,
        Guard.STALE_SYNC: held.stale_before,
    }[guard]
    if value is None:
        raise ValueError(f"the write checks {guard} but the writer holds no value for it")
    if guard is Guard.SAME_ATTEMPT:
        return RequestItem.attempt == value
    if guard is Guard.SAME_DUE_AT:
        return RequestItem.due_at == value
    if guard is Guard.SAME_SEQ:
        return RequestItem.seq == value
    return (RequestItem.kind == SYNC) & (RequestItem.updated_at < value)
