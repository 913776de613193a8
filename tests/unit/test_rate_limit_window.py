"""The per-connection rate limit when messages of a connection arrive together."""

from __future__ import annotations

from streamer import store
from tests.unit.helpers import Client


def test_messages_racing_into_a_new_window_are_all_admitted(test_app, monkeypatch):
    # GIVEN a connection's first message of a second is being admitted
    Client("conn-alice", user="alice", tenant="t1").connect()
    real_conditional = store._conditional
    writes = 0

    def another_message_gets_in_between(call):
        nonlocal writes
        writes += 1
        if writes == 2:
            # WHEN a second message of the same connection opens the window first
            monkeypatch.setattr(store, "_conditional", real_conditional)
            assert store.admit_message("conn-alice", window=100, limit=20)
        return real_conditional(call)

    monkeypatch.setattr(store, "_conditional", another_message_gets_in_between)

    # THEN both are admitted: two messages are far below the limit of 20
    assert store.admit_message("conn-alice", window=100, limit=20)


def test_a_message_stamped_with_an_earlier_second_counts_in_the_current_window(test_app):
    # GIVEN a connection whose window of second 101 is open
    Client("conn-alice", user="alice", tenant="t1").connect()
    assert store.admit_message("conn-alice", window=101, limit=20)

    # WHEN a message routed side by side still computed second 100
    admitted = store.admit_message("conn-alice", window=100, limit=20)

    # THEN it counts in the open window, which does not move back
    connection = store.get_connection("conn-alice")
    assert admitted and (connection.rate_window, connection.rate_count) == (101, 2)


def test_a_full_window_refuses_until_the_next_second(test_app):
    Client("conn-alice", user="alice", tenant="t1").connect()

    answers = [store.admit_message("conn-alice", window=100, limit=3) for _ in range(4)]

    assert answers == [True, True, True, False]
    assert store.admit_message("conn-alice", window=101, limit=3)
