"""The stack's channel to an execution environment: whole messages, one read each."""

from __future__ import annotations

import os
import pickle
import socket
import struct
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pytest

from local.channel import READ_SIZE, Channel


class _CountingSocket(socket.socket):
    """A socket that counts its `recv` calls."""

    reads = 0

    def recv(self, size: int, flags: int = 0) -> bytes:  # type: ignore[override]
        self.reads += 1
        return super().recv(size, flags)


@pytest.fixture
def pair() -> Iterator[tuple[Channel, _CountingSocket, socket.socket]]:
    ours, theirs = socket.socketpair()
    counted = _CountingSocket(fileno=ours.detach())
    channel = Channel(counted)
    yield channel, counted, theirs
    channel.close()
    theirs.close()


def test_a_message_sent_whole_is_read_in_one_call(pair) -> None:
    channel, counted, theirs = pair
    Channel(theirs).send(("ok", '{"statusCode": 200}'))

    assert channel.recv() == ("ok", '{"statusCode": 200}')
    assert counted.reads == 1


def test_two_messages_read_together_are_both_delivered_the_second_without_a_read(pair) -> None:
    # GIVEN an answer followed by the zygote's word that the environment ended, both on
    # the socket before the stack reads
    channel, counted, theirs = pair
    peer = Channel(theirs)
    peer.send(("ok", "{}"))
    peer.send(("exited", 0))

    # WHEN the stack reads the answer
    first = channel.recv()

    # THEN the second is kept: the channel says so without the socket, and hands it over
    assert first == ("ok", "{}")
    assert channel.buffered()
    assert channel.poll(0)
    assert channel.recv() == ("exited", 0)
    assert counted.reads == 1
    assert not channel.buffered()
    assert not channel.poll(0)


def test_none_is_a_message_like_any_other(pair) -> None:
    channel, _, theirs = pair
    Channel(theirs).send(None)

    assert channel.poll(1)
    assert channel.recv() is None


def test_a_message_larger_than_one_read_arrives_whole(pair) -> None:
    channel, _, theirs = pair
    large = "x" * (10 * READ_SIZE)
    sender = threading.Thread(target=Channel(theirs).send, args=(("ok", large),))
    sender.start()

    message = channel.recv()
    sender.join(10)

    assert message == ("ok", large)


def test_a_message_is_not_handed_over_until_its_rest_comes(pair) -> None:
    # GIVEN the first bytes of a message on the socket, read
    channel, _, theirs = pair
    data = pickle.dumps(("ok", "{}"))
    frame = struct.pack("!i", len(data)) + data
    theirs.sendall(frame[:7])
    assert channel.read()

    # THEN it is not a message yet, and nothing else is waiting
    assert not channel.buffered()
    assert not channel.poll(0)

    # WHEN the rest comes, it is
    theirs.sendall(frame[7:])
    assert channel.recv() == ("ok", "{}")


def test_the_peers_end_ends_the_channel(pair) -> None:
    channel, _, theirs = pair
    Channel(theirs).send(("exited", -9))
    theirs.shutdown(socket.SHUT_WR)

    assert channel.recv() == ("exited", -9)
    assert channel.poll(0)
    with pytest.raises(EOFError):
        channel.recv()


def test_it_reads_what_multiprocessing_connection_writes(pair) -> None:
    channel, _, theirs = pair
    with Connection(os.dup(theirs.fileno())) as connection:
        connection.send(("exited", 3))

    assert channel.recv() == ("exited", 3)


def test_a_closed_channel_cannot_be_polled(pair) -> None:
    channel, _, _ = pair
    channel.close()

    with pytest.raises(OSError):
        channel.poll(0)


def test_a_poll_waits_its_whole_timeout_rounded_up_never_less(pair, monkeypatch) -> None:
    # `select.poll` takes milliseconds: 0.9 ms must wait 1 ms, not 0 (an abandoned
    # invocation's wait for its answer ends at its deadline, never before it).
    channel, _, _ = pair
    asked: list[int | None] = []

    class _Poll:
        def register(self, descriptor: int, events: int) -> None:
            pass

        def poll(self, milliseconds: int | None = None) -> list:
            asked.append(milliseconds)
            return []

    monkeypatch.setattr("local.channel.select.poll", _Poll)

    assert not channel.poll(0.0009)
    assert not channel.poll(1.0001)
    assert not channel.poll(0)
    assert asked == [1, 1001, 0]
