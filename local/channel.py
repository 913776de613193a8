"""Messages between the stack and an execution environment, over one end of a socket pair.

Each message is a pickle after its length (4 bytes, big-endian), as
`multiprocessing.connection` frames them. What differs is the reading: a
`Channel` reads whatever the socket holds in one call, up to `READ_SIZE` (or
the rest of a message larger than that), and keeps what follows the first
whole message for the next `recv`. A message sent whole so costs its reader
one read, not two (its length, then the rest): a few microseconds of the
round trip of every invocation. And two messages read together stay two: an
answer followed by the zygote's word that the environment ended
(`local.zygote`) is not lost with the read that got the answer.

One thread at a time uses a channel (whoever holds its environment).
"""

from __future__ import annotations

import math
import pickle
import select
import socket
import struct

#: The length before each message's pickle.
_HEADER = struct.Struct("!i")
#: The most one read takes, unless a message that large is only part read.
READ_SIZE = 64 * 1024


class Channel:
    """Whole messages to and from the peer of `endpoint`, a blocking stream socket."""

    def __init__(self, endpoint: socket.socket) -> None:
        self._socket = endpoint
        #: Read and not yet handed out: whole messages, maybe the start of one more.
        self._buffer = bytearray()
        #: Whether a read found the peer's end closed (nothing more will come).
        self._ended = False

    def fileno(self) -> int:
        return self._socket.fileno()

    def close(self) -> None:
        self._socket.close()

    def send(self, message: object) -> None:
        """Send `message` whole, in one write when the socket takes it and it is small
        (a large one is not copied behind its header); OSError if it cannot."""
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        header = _HEADER.pack(len(data))
        if len(data) > READ_SIZE:
            self._socket.sendall(header)
            self._socket.sendall(data)
            return
        self._socket.sendall(header + data)

    def _size(self) -> int | None:
        """The length of the message at the buffer's start, once its header is read."""
        if len(self._buffer) < _HEADER.size:
            return None
        return _HEADER.unpack_from(self._buffer)[0]

    def buffered(self) -> bool:
        """Whether a whole message was read already: `recv` returns it without reading."""
        size = self._size()
        return size is not None and len(self._buffer) >= _HEADER.size + size

    def read(self) -> bool:
        """Read once what the socket holds (blocking until something does); False when
        the peer's end is closed, so no more will come."""
        if self._ended:
            return False
        size = self._size()
        wanted = READ_SIZE
        if size is not None:
            wanted = max(wanted, _HEADER.size + size - len(self._buffer))
        chunk = self._socket.recv(wanted)
        if not chunk:
            self._ended = True
            return False
        self._buffer += chunk
        return True

    def recv(self) -> object:
        """The next message, reading until it is whole (no read if it is already);
        EOFError when the peer ended first."""
        while not self.buffered():
            if not self.read():
                raise EOFError("the channel's peer ended")
        end = _HEADER.size + _HEADER.unpack_from(self._buffer)[0]
        # Unpickled where it was read, not from a copy (the views go before the buffer
        # shrinks: a bytearray with a view of it cannot change size).
        with memoryview(self._buffer) as whole, whole[_HEADER.size : end] as data:
            message = pickle.loads(data)
        del self._buffer[:end]
        return message

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether `recv` has something to go on without waiting: a whole message read
        already, or the socket readable (data, or its end) within `timeout` seconds
        (None: until it is). OSError when the channel is closed."""
        if self.buffered() or self._ended:
            return True
        if self._socket.fileno() < 0:
            raise OSError("the channel is closed")
        waiting = select.poll()
        waiting.register(self._socket.fileno(), select.POLLIN)
        # Rounded up, as multiprocessing's `Connection.poll` does: never back before it.
        milliseconds = None if timeout is None else max(0, math.ceil(timeout * 1000))
        return bool(waiting.poll(milliseconds))
