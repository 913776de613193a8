"""External jobs end to end: `batch_classify` against the local stack's fake batch provider."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import LocalStack, start_stack
from tests.e2e.wire import open_socket, receive, run, run_async_request, send

pytestmark = pytest.mark.e2e

#: The provider classifies 10 items per status call and fails every tenth.
FIFTY_ITEMS = {"processed": 50, "succeeded": 45, "failed": 5}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with start_stack(tmp_path_factory.mktemp("external-jobs"), "--poll-jobs-interval", "1") as s:
        yield s


def set_outage(stack: LocalStack, on: bool) -> None:
    request = urllib.request.Request(
        stack.ready["batch_provider_url"] + "/_outage",
        data=json.dumps({"on": on}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


def test_three_jobs_of_fifty_items_complete_with_their_aggregates(stack: LocalStack) -> None:
    async def one_job() -> tuple[dict, list[dict]]:
        async with open_socket(stack.url(stack.dev_token)) as socket:
            return await run_async_request(socket, "batch_classify", {"count": 50})

    async def scenario() -> list[tuple[dict, list[dict]]]:
        # GIVEN three clients WHEN each starts a job of 50 items at once
        return await asyncio.gather(one_job(), one_job(), one_job())

    # THEN each ends COMPLETED once, with its aggregates, after progress carrying them
    for _, updates in run(scenario()):
        complete = updates[-1]
        assert complete["status"] == "COMPLETED" and complete["result"] == FIFTY_ITEMS
        assert [u["type"] for u in updates].count("complete") == 1
        progress = [u for u in updates if u["type"] == "progress"]
        assert progress and progress[-1]["metadata"] == FIFTY_ITEMS
        seqs = [u["seq"] for u in updates]
        assert seqs == sorted(seqs)


def test_a_provider_outage_delays_a_job_and_loses_nothing(stack: LocalStack) -> None:
    async def scenario() -> tuple[str, dict]:
        async with open_socket(stack.url(stack.dev_token)) as socket:
            # GIVEN a job submitted, then the provider down for its status calls
            await send(socket, {"action": "batch_classify", "payload": {"count": 50}})
            acknowledgment = await receive(socket)
            set_outage(stack, True)
            # WHEN the poller runs several times during the outage
            await asyncio.sleep(4)
            await send(socket, {"action": "status", "request_id": acknowledgment["request_id"]})
            while (during := await receive(socket))["type"] != "status":
                pass
            # and the provider comes back
            set_outage(stack, False)
            while (message := await receive(socket))["type"] != "complete":
                pass
            return during["request"]["status"], message

    # THEN the job was still WAITING during the outage (its polls were retried), then completed
    status_during_outage, complete = run(scenario())
    assert status_during_outage == "WAITING"
    assert "handler asked for a retry" in stack.log_file.read_text()
    assert complete["status"] == "COMPLETED" and complete["result"] == FIFTY_ITEMS
