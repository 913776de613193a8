"""One botocore session per process, shared by every AWS client the runtime makes.

A botocore session loads each service's JSON model once; a client made from a
fresh session loads it again. Measured on a 2-core machine: about 50-70 ms for
the first DynamoDB client of a session, about 2 ms for another client of the
same session. PynamoDB makes a session for each model's connection (and for
each thread), so without this a cold start paid that load three times, and a
local stack once per thread that raced to the first call.

botocore sessions are not thread-safe while they create clients, so clients
are created under one lock; the clients themselves are thread-safe.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.RLock()
_session: Any = None


def session() -> Any:  # -> botocore.session.Session; imported late, off cold paths
    """The process's botocore session, made on first use."""
    global _session
    with _lock:
        if _session is None:
            import botocore.session

            _session = botocore.session.get_session()
        return _session


def create_client(service_name: str, **kwargs: Any) -> Any:
    """A botocore client of `service_name` from the process's session."""
    with _lock:
        return session().create_client(service_name, **kwargs)


def share_with_pynamodb() -> None:
    """Make PynamoDB's connections take their session from here, one client at a time.

    PynamoDB creates a connection's client on its first call, without a lock;
    from one shared session, threads racing to their first call would create
    clients concurrently, which botocore does not allow. The connection's
    `client` property is wrapped to run under this module's lock (once).
    """
    import pynamodb.connection.base as base

    base.get_session = session
    if getattr(base.Connection.client.fget, "_streamer_locked", False):
        return
    unlocked = base.Connection.client.fget

    def client(connection: Any) -> Any:
        with _lock:
            return unlocked(connection)

    client._streamer_locked = True  # type: ignore[attr-defined]
    base.Connection.client = property(client)  # type: ignore[method-assign]
