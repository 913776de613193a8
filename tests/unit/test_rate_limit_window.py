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
