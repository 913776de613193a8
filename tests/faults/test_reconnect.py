"""The client's connection drops during a run; the client library's `call` still returns."""

from __future__ import annotations

import asyncio
import random

import pytest

from client import Progress, ReconnectPolicy, StreamerClient
from tests.e2e.wire import eventually, run, unique
from tests.faults.conftest import TENANT, FaultyStack

pytestmark = pytest.mark.faults


class LongestWait(random.Random):
    """Jitter that always picks the longest wait, so a test knows how long the client is away."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize(
    ("away_s", "payload", "ended_while_away"),
    [(0.2, {"pages": 10, "page_ms": 200}, False), (3.0, {"pages": 4, "page_ms": 100}, True)],
    ids=["back during the run", "away until after the end"],
)
def test_call_returns_the_result_across_a_dropped_connection(
    faulty_stack: FaultyStack, away_s: float, payload: dict, ended_while_away: bool
) -> None:
    user, request_id = unique("dropped"), unique("report")

    async def scenario() -> tuple[object, list[Progress], int]:
        token = faulty_stack.stack.token(user, TENANT)
        seen: list[Progress] = []
        first_progress = asyncio.Event()

        def on_progress(progress: Progress) -> None:
            seen.append(progress)
            first_progress.set()

        policy = ReconnectPolicy(initial_delay=away_s, max_delay=away_s)
        async with StreamerClient(
            faulty_stack.stack.websocket_url, token, reconnect=policy, rng=LongestWait()
        ) as client:
            # GIVEN a call in progress
            call = asyncio.create_task(
                client.call(
                    "generate_report", payload, request_id=request_id, on_progress=on_progress
                )
            )
            await asyncio.wait_for(first_progress.wait(), 15)
            [dropped] = faulty_stack.connection_ids(user)
            # WHEN its connection drops
            # (from a thread: the close handshake needs this loop to answer)
            await asyncio.to_thread(faulty_stack.drop_connection, dropped)
            # THEN the call returns the result once the client is back
            result = await asyncio.wait_for(call, 30)
            # on a new connection
            [connection] = await eventually(
                lambda: asyncio.to_thread(faulty_stack.stack.items_of_user, "connections", user),
                lambda items: [i["connection_id"]["S"] for i in items] not in ([], [dropped]),
            )
        return result, seen, int(connection["connected_at"]["N"])

    result, seen, reconnected_at = run(scenario())

    assert result["pages"] == payload["pages"]
    ended_at = faulty_stack.request(TENANT, user, request_id)["updated_at"]
    assert (ended_at < reconnected_at) is ended_while_away
    # each update reached the caller once, in order
    sequence = [p.seq for p in seen]
    assert sequence == sorted(set(sequence))
    # and the reconnect ran nothing again
    assert [r["attempt"] for r in faulty_stack.runs(request_id)] == [1]
    assert faulty_stack.request(TENANT, user, request_id)["status"] == "COMPLETED"
