"""One user's requests run side by side, not one after another."""

from __future__ import annotations

import pytest

from local.event_source_mapping import MappingConfig
from local.streams import lane_for
from streamer.keys import owner_key, request_key
from tests.e2e.wire import ask, open_socket, receive, run, unique

pytestmark = pytest.mark.e2e


def lane(owner: str, request_id: str) -> int:
    """The stream mapping's concurrent batch (lane) a request's record goes to."""
    record = {"dynamodb": {"Keys": {"request_key": {"S": request_key(owner, request_id)}}}}
    return lane_for(record, "request_key", MappingConfig().parallelization_factor)


def ids_in_two_lanes(owner: str) -> tuple[str, str]:
    """Two request ids whose records go to different lanes. The mapping hashes a record's
    partition key to one of `ParallelizationFactor` concurrent batches of its shard, one
    batch in flight each, on AWS as locally: two requests in one lane run one after the
    other, whoever owns them (one pair in ten, with the factor at 10). ParallelizationFactor:
    "the number of batches to process concurrently from each shard", records of one
    partition key in order (docs.aws.amazon.com/lambda/latest/dg/with-ddb.html, concurrent
    reads of a shard)."""
    second = next(
        f"second-{n}" for n in range(100) if lane(owner, f"second-{n}") != lane(owner, "first")
    )
    return "first", second


def test_a_users_second_request_starts_before_the_first_ends(local_stack):
    user, tenant = unique("user"), unique("tenant")
    first, second = ids_in_two_lanes(owner_key(tenant, user))

    async def scenario() -> list[dict]:
        token = local_stack.token(user, tenant)
        async with open_socket(local_stack.url(token)) as socket:
            payload = {"pages": 10, "page_ms": 150}
            for request_id in (first, second):
                ack = await ask(
                    socket, {"action": "generate_report", "id": request_id, "payload": payload}
                )
                assert ack["type"] == "acknowledgment", ack
            messages = []
            while sum(m["type"] == "complete" for m in messages) < 2:
                messages.append(await receive(socket))
            return messages

    # WHEN one user queues a second long request while the first runs
    messages = run(scenario())

    # THEN the second reported progress before the first completed: they ran concurrently
    first_complete = next(
        i for i, m in enumerate(messages) if m["type"] == "complete" and m["request_id"] == first
    )
    second_progress = next(
        i for i, m in enumerate(messages) if m["type"] == "progress" and m["request_id"] == second
    )
    assert second_progress < first_complete
    assert {m["status"] for m in messages if m["type"] == "complete"} == {"COMPLETED"}
