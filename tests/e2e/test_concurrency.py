"""One user's requests run side by side, not one after another."""

from __future__ import annotations

import pytest

from tests.e2e.wire import ask, open_socket, receive, run, unique

pytestmark = pytest.mark.e2e


def test_a_users_second_request_starts_before_the_first_ends(local_stack):
    async def scenario() -> list[dict]:
        token = local_stack.token(unique("user"), unique("tenant"))
        async with open_socket(local_stack.url(token)) as socket:
            payload = {"pages": 10, "page_ms": 150}
            for request_id in ("first", "second"):
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
        i for i, m in enumerate(messages) if m["type"] == "complete" and m["request_id"] == "first"
    )
    second_progress = next(
        i for i, m in enumerate(messages) if m["type"] == "progress" and m["request_id"] == "second"
    )
    assert second_progress < first_complete
    assert {m["status"] for m in messages if m["type"] == "complete"} == {"COMPLETED"}
