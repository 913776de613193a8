"""Issue 16's promises, on two regions whose tables race as global tables do.

A request is decided at one table, its home region's, whichever region a
client talks to (docs/guarantees.md, "Multi-region"): a cancel from the other
region ends it CANCELLED once, whatever the replication lag; one client `id`
sent to both regions runs once; the other region answers `status` and
`subscribe` for it before its item has replicated; and when the home region
stops, the other region takes its stalled requests over within the recovery
bound and runs each to its end once, also after the home region returns.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from client import StreamerClient, StreamerError
from streamer import regions
from tests.e2e.wire import eventually, run, unique
from tests.faults.app import FINISHED
from tests.faults.conftest import LEASE_MARGIN_S, PROCESSOR_TIMEOUT_S, TENANT, FaultyStack
from tests.regions.conftest import EU, LAG_S, SWEEP_INTERVAL_S, US, TwoRegions

pytestmark = pytest.mark.regions

#: Seconds of work a report below runs: long enough to be cancelled, subscribed or stopped mid-run.
LONG_REPORT = {"pages": 40, "page_ms": 100}
SHORT_REPORT = {"pages": 3, "page_ms": 50}


def _client(region: FaultyStack, user: str) -> StreamerClient:
    return StreamerClient(region.stack.websocket_url, region.stack.token(user, TENANT))


def _status(region: FaultyStack, user: str, request_id: str) -> str | None:
    item = region.request(TENANT, user, request_id)
    return item["status"] if item else None


async def _statuses(two_regions: TwoRegions, user: str, request_id: str) -> dict[str, Any]:
    return {
        name: await asyncio.to_thread(_status, two_regions.region(name), user, request_id)
        for name in two_regions.regions
    }


async def _settled(two_regions: TwoRegions, user: str, request_id: str, status: str) -> None:
    """Every replica shows `status`, and still does once a write in flight would have landed."""
    await eventually(
        lambda: _statuses(two_regions, user, request_id),
        lambda seen: set(seen.values()) == {status},
    )
    await asyncio.sleep(2 * LAG_S + 1)
    assert set((await _statuses(two_regions, user, request_id)).values()) == {status}


@pytest.mark.parametrize("lag_s", [0.0, 0.5, 1.0, 2.0])
def test_a_cancel_from_the_other_region_ends_a_running_request_cancelled_once(
    two_regions: TwoRegions, lag_s: float
) -> None:
    # GIVEN a report running in its home region, us-east-1, under a replication lag
    two_regions.set_lag(lag_s)
    us, eu = two_regions.region(US), two_regions.region(EU)
    user, request_id = two_regions.user_homed_in(US, "cancel"), unique("cancel")

    async def scenario() -> tuple[str, StreamerError]:
        started = asyncio.Event()
        async with _client(us, user) as here, _client(eu, user) as there:
            call = asyncio.create_task(
                here.call(
                    "generate_report",
                    LONG_REPORT,
                    request_id=request_id,
                    on_progress=lambda _: started.set(),
                )
            )
            await asyncio.wait_for(started.wait(), 30)
            # WHEN the same user cancels it from eu-west-1
            cancelled = await asyncio.wait_for(there.cancel(request_id), 30)
            with pytest.raises(StreamerError) as raised:
                await asyncio.wait_for(call, 30)
            await _settled(two_regions, user, request_id, "CANCELLED")
            return cancelled.status, raised.value

    cancelled_as, error = run(scenario())

    # THEN both connections see it CANCELLED, every replica keeps CANCELLED,
    assert cancelled_as == "CANCELLED"
    assert error.request_status == "CANCELLED"
    # and it ran once, in its home region, and never to its end
    runs = two_regions.runs(request_id)
    assert [(r["attempt"], r["region"]) for r in runs] == [(1, US)]
    assert two_regions.region(US).runs(request_id, FINISHED) == []


@pytest.mark.parametrize("home", [US, EU])
def test_one_client_id_sent_to_both_regions_at_once_runs_once(
    two_regions: TwoRegions, home: str
) -> None:
    # GIVEN a replication lag longer than the two sends are apart
    two_regions.set_lag(1.0)
    user, request_id = two_regions.user_homed_in(home, "twice"), unique("twice")

    async def scenario() -> list[Any]:
        async with (
            _client(two_regions.region(US), user) as here,
            _client(two_regions.region(EU), user) as there,
        ):
            # WHEN the client sends the same request id to both regions at once
            outcomes = await asyncio.wait_for(
                asyncio.gather(
                    here.call("generate_report", SHORT_REPORT, request_id=request_id),
                    there.call("generate_report", SHORT_REPORT, request_id=request_id),
                    return_exceptions=True,
                ),
                60,
            )
            await _settled(two_regions, user, request_id, "COMPLETED")
            return outcomes

    outcomes = run(scenario())

    # THEN each send got the one request's result (an idempotent repeat) or CONFLICT,
    results = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert results and all(r == results[0] for r in results), outcomes
    assert all(isinstance(o, StreamerError) and o.code == "CONFLICT" for o in refused), outcomes
    # and it ran once, in its home region
    assert [(r["attempt"], r["region"]) for r in two_regions.runs(request_id)] == [(1, home)]


def test_status_and_subscribe_from_the_other_region_follow_a_request_before_it_replicates(
    two_regions: TwoRegions,
) -> None:
    # GIVEN a replication lag of two seconds and a report running in us-east-1
    two_regions.set_lag(2.0)
    us, eu = two_regions.region(US), two_regions.region(EU)
    user, request_id = two_regions.user_homed_in(US, "follow"), unique("follow")

    async def scenario() -> tuple[str, Any, Any, list[Any]]:
        started = asyncio.Event()
        followed: list[Any] = []
        async with _client(us, user) as here, _client(eu, user) as there:
            call = asyncio.create_task(
                here.call(
                    "generate_report",
                    LONG_REPORT,
                    request_id=request_id,
                    on_progress=lambda _: started.set(),
                )
            )
            await asyncio.wait_for(started.wait(), 30)
            # WHEN a connection in eu-west-1 asks for its status and subscribes at once
            snapshot = await asyncio.wait_for(there.status(request_id), 30)
            subscribed = await asyncio.wait_for(there.subscribe(request_id, followed.append), 60)
            return snapshot.status, subscribed, await asyncio.wait_for(call, 30), followed

    status, subscribed, result, followed = run(scenario())

    # THEN eu-west-1 saw it running, got its progress and the same result as its caller
    assert status in ("PENDING", "PROCESSING")
    assert subscribed == result and result["pages"] == LONG_REPORT["pages"]
    assert followed, "no progress reached the subscriber in eu-west-1"
    assert [r["region"] for r in two_regions.runs(request_id)] == [US]


def test_a_connection_in_another_region_than_the_requests_home_gets_its_progress_and_result(
    two_regions: TwoRegions,
) -> None:
    # GIVEN a user whose requests are decided and run in us-east-1, connected to eu-west-1
    eu = two_regions.region(EU)
    user, request_id = two_regions.user_homed_in(US, "abroad"), unique("abroad")

    async def scenario() -> tuple[Any, list[Any]]:
        seen: list[Any] = []
        async with _client(eu, user) as there:
            # WHEN it runs a report
            result = await asyncio.wait_for(
                there.call(
                    "generate_report", SHORT_REPORT, request_id=request_id, on_progress=seen.append
                ),
                60,
            )
            return result, seen

    result, seen = run(scenario())

    # THEN it ran in us-east-1 and its progress and result came back through eu-west-1's API
    assert result["pages"] == SHORT_REPORT["pages"] and seen
    assert [r["region"] for r in two_regions.runs(request_id)] == [US]


def _recovery_bound_s() -> float:
    """The documented bound (`regions.recovery_bound_s`) for the stack's timings."""
    return regions.recovery_bound_s(
        regions.TakeoverSettings(
            lease_s=PROCESSOR_TIMEOUT_S + LEASE_MARGIN_S,
            sweep_interval_s=SWEEP_INTERVAL_S,
            grace_s=1.0,
            heartbeat_stale_s=3 * SWEEP_INTERVAL_S,
            replication_lag_s=LAG_S,
        )
    )


def test_a_stopped_regions_requests_run_to_their_end_once_in_the_other_region(
    two_regions: TwoRegions,
) -> None:
    # GIVEN reports of a user homed in us-east-1, running there, its client connected to eu-west-1
    eu = two_regions.region(EU)
    user = two_regions.user_homed_in(US, "outage")
    request_ids = [unique("outage") for _ in range(3)]
    run_s = LONG_REPORT["pages"] * LONG_REPORT["page_ms"] / 1000

    async def scenario() -> tuple[list[Any], set[str]]:
        started = {request_id: asyncio.Event() for request_id in request_ids}
        async with _client(eu, user) as there:
            calls = [
                asyncio.create_task(
                    there.call(
                        "generate_report",
                        LONG_REPORT,
                        request_id=request_id,
                        on_progress=lambda _, event=started[request_id]: event.set(),
                    )
                )
                for request_id in request_ids
            ]
            # (us-east-1's stream mapping may run them one after another: one
            # lane of the stream per parallelization slot; the last is mid-run)
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started.values())), 60)
            # WHEN us-east-1 stops: its workers die mid-run, its table stays
            await asyncio.to_thread(two_regions.stop, US)
            ended_before = {r["request_id"] for r in two_regions.runs(set(request_ids), FINISHED)}
            # (the calls wait at most the recovery bound plus every run, twice over:
            # eu-west-1's stream mapping, too, has fewer lanes than there are requests,
            # and may run them one after another)
            results = await asyncio.wait_for(
                asyncio.gather(*calls), 2 * (_recovery_bound_s() + len(request_ids) * run_s)
            )
            return results, ended_before

    results, ended_before = run(scenario())
    cut_off = set(request_ids) - ended_before

    # THEN every request completed; each ran to its end exactly once: those
    # us-east-1 finished before it stopped there, those it was running in eu-west-1
    assert cut_off, "no report was running when us-east-1 stopped"
    assert all(r["pages"] == LONG_REPORT["pages"] for r in results)

    def finished() -> list[tuple[str, str]]:
        return sorted(
            (r["request_id"], r["region"]) for r in two_regions.runs(set(request_ids), FINISHED)
        )

    # (a handler that returned in us-east-1 just before it stopped, its end not yet
    # stored, is taken over like the others: at least once. Its second run starts from
    # the checkpoint past its last page, so no page is done twice.)
    done = {"pages_done": LONG_REPORT["pages"]}
    resumed_at_end = set()
    for r in two_regions.runs(ended_before, FINISHED):
        if r["region"] == EU:
            assert r["checkpoint"] == done, r
            resumed_at_end.add(r["request_id"])
    assert finished() == sorted(
        [(request_id, US) for request_id in ended_before]
        + [(request_id, EU) for request_id in cut_off | resumed_at_end]
    )
    # WHEN us-east-1 comes back (its stream mapping reads its stream again from the start)
    two_regions.start(US)
    for request_id in request_ids:
        run(_settled(two_regions, user, request_id, "COMPLETED"))
    time.sleep(PROCESSOR_TIMEOUT_S)
    # THEN it runs none of them again
    started = two_regions.runs(set(request_ids))
    assert sorted((r["request_id"], r["attempt"], r["region"]) for r in started) == sorted(
        [(request_id, 1, US) for request_id in request_ids]
        + [(request_id, 2, EU) for request_id in cut_off | resumed_at_end]
    )
    assert len(finished()) == len(request_ids) + len(resumed_at_end)
