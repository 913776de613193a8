"""A resume over the connection's rate limit, against `python -m local` with a small bucket."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from client import StreamerClient
from tests.e2e.conftest import LocalStack, start_stack
from tests.e2e.wire import eventually, run, unique

pytestmark = pytest.mark.e2e

# The router reads its bucket from the environment the stack's functions
# inherit: 5 messages at once, then 2 a second.
BUCKET_BURST = 5
BUCKET_PER_S = 2
# More requests than the bucket lets through at once, few enough that the
# default three resends with the default backoff's jitter pass them all.
REQUESTS = 8
DEADLINE_S = 60


@pytest.fixture(scope="module")
def small_bucket_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(os.environ, "STREAMER_RATE_LIMIT_PER_S", str(BUCKET_PER_S))
        patch.setitem(os.environ, "STREAMER_RATE_LIMIT_BURST", str(BUCKET_BURST))
        directory = tmp_path_factory.mktemp("small-bucket")
        # One router environment: each environment keeps its own view of a connection's
        # bucket, and messages spread over N of them may take up to N - 1 more bursts
        # (docs/security.md); this test is about the client meeting the limit.
        with start_stack(
            directory, "--app", "tests.client.held_app", "--function-concurrency", "1"
        ) as stack:
            yield stack


def drop_connection(stack: LocalStack, connection_id: str) -> None:
    """Close a connection from the server side, as API Gateway's DeleteConnection does."""
    stack.client("apigatewaymanagementapi").delete_connection(ConnectionId=connection_id)


def test_a_resume_over_the_bucket_still_completes_every_call(
    small_bucket_stack: LocalStack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stack = small_bucket_stack
    user = unique("resume")
    release = tmp_path / "release"

    async def scenario() -> list[dict]:
        token = stack.token(user, "tenant-e2e")
        async with (
            asyncio.timeout(DEADLINE_S),
            StreamerClient(stack.websocket_url, token, heartbeat_interval=None) as client,
        ):
            # GIVEN more stored requests awaited on one connection than its bucket holds,
            # each running until the test releases it
            calls = [
                asyncio.create_task(client.call("hold", {"until": str(release)}))
                for _ in range(REQUESTS)
            ]
            await eventually(
                lambda: asyncio.to_thread(stack.items_of_user, "requests", user),
                lambda items: len(items) == REQUESTS or any(call.done() for call in calls),
            )
            ended = [call for call in calls if call.done()]
            assert not ended, ended[0].exception()
            [connection] = await asyncio.to_thread(stack.items_of_user, "connections", user)
            caplog.clear()
            # WHEN the gateway drops the connection, so the client resumes them all at
            # once (from a thread: the close handshake needs this loop to answer),
            # and the requests are released
            await asyncio.to_thread(drop_connection, stack, connection["connection_id"]["S"])
            release.touch()
            # THEN every call still returns its own result
            return await asyncio.gather(*calls)

    with caplog.at_level(logging.INFO, logger="client"):
        results = run(scenario())
    assert results == [{"released": True}] * REQUESTS
    # AND the resume did meet the limit: some of its messages were sent again
    assert any("rate limited" in record.getMessage() for record in caplog.records)
