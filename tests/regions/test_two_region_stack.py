"""The two-region local stack itself: its regions answer, its tables replicate, a region stops.

What the cross-region tests of issue 16 stand on: `python -m local --regions
us-east-1,eu-west-1` runs a gateway and functions per region over replicated
tables; one dev token works in both; a write in one region's replica reaches
the other's; a stopped region's gateway refuses connections and its workers
are gone while the other region goes on, and it answers again once started.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from local import multiregion
from streamer.endpoints import parse_overrides
from tests.e2e.wire import ask, eventually, open_socket, run, unique
from tests.faults.conftest import TENANT, FaultRefused, FaultyStack
from tests.regions.conftest import EU, REGIONS, SWEEP_INTERVAL_S, US, TwoRegions

pytestmark = pytest.mark.regions

SHORT_REPORT = {"pages": 3, "page_ms": 50}
#: Long enough to be stopped mid-run.
LONG_REPORT = {"pages": 200, "page_ms": 100}


def _echo(region: FaultyStack, token: str) -> dict:
    async def scenario() -> dict:
        async with open_socket(region.stack.url(token)) as socket:
            return await ask(socket, {"action": "echo", "id": unique("echo"), "payload": {"n": 1}})

    return run(scenario())


def _refuses_connections(region: FaultyStack) -> bool:
    async def scenario() -> bool:
        try:
            async with open_socket(region.stack.url(region.stack.dev_token)):
                return False
        except OSError:
            return True

    return run(scenario())


def _pid_alive(pid: int) -> bool:
    """Whether the process runs: a killed one nobody has reaped yet (a zombie) does not."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _dies(pid: int, within_s: float = 5.0) -> bool:
    """Whether the process is gone within `within_s`. The stop kills the region's process
    group with SIGKILL and waits for the region's own process only: a worker of that group
    dies as the kernel next runs it, which on a loaded machine is a moment after the stop
    returns (kill(2) queues the signal; it does not wait for the death)."""
    deadline = time.monotonic() + within_s
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_ready_file_names_each_regions_urls(two_regions: TwoRegions) -> None:
    ready = two_regions.stack.ready
    assert list(ready["regions"]) == list(REGIONS)
    urls = [ready["regions"][r][name] for r in REGIONS for name in ("websocket_url", "http_url")]
    assert len(set(urls)) == len(urls), urls
    for name in ("websocket_url", "management_url", "http_url"):
        assert ready[name] == ready["regions"][US][name]
    assert set(two_regions.state()["regions"]) == set(REGIONS)


def test_one_dev_token_answers_in_every_region(two_regions: TwoRegions) -> None:
    token = two_regions.stack.dev_token
    for name in REGIONS:
        answer = _echo(two_regions.region(name), token)
        assert answer["type"] == "response", (name, answer)
        assert answer["data"] == {"echo": {"n": 1}}


def test_each_regions_functions_can_reach_every_region(two_regions: TwoRegions) -> None:
    ready = two_regions.stack.ready
    endpoints = {r: urls["dynamodb_endpoint"] for r, urls in ready["regions"].items()}
    management = {urls["api_id"]: urls["management_url"] for urls in ready["regions"].values()}
    for name in REGIONS:
        region = two_regions.region(name)

        async def ask_environment(region: FaultyStack = region) -> dict:
            async with open_socket(region.stack.url(region.stack.dev_token)) as socket:
                return await ask(socket, {"action": "environment", "id": unique("env")})

        seen = run(ask_environment())["data"]
        assert seen["AWS_REGION"] == name
        assert seen["AWS_ENDPOINT_URL_DYNAMODB"] == endpoints[name]
        assert seen["STREAMER_REGIONS"].split(",") == list(REGIONS)
        assert json.loads(seen["STREAMER_TABLE_ENDPOINTS"]) == endpoints
        assert parse_overrides(seen["STREAMER_MANAGEMENT_ENDPOINT"]) == management
        assert float(seen["STREAMER_SWEEP_INTERVAL_S"]) == SWEEP_INTERVAL_S
        stale = multiregion.HEARTBEAT_STALE_SWEEPS * SWEEP_INTERVAL_S
        assert float(seen["STREAMER_HEARTBEAT_STALE_S"]) == stale
        grace = multiregion.DEFAULT_TAKEOVER_GRACE_S
        assert float(seen["STREAMER_TAKEOVER_GRACE_S"]) == grace


def test_an_async_request_completes_in_each_region(two_regions: TwoRegions) -> None:
    for name in REGIONS:
        region = two_regions.region(name)
        user = two_regions.user_homed_in(name)
        request_id = unique("report")
        frames = region.run_request(user, request_id, "generate_report", SHORT_REPORT)
        assert frames[-1]["status"] == "COMPLETED", (name, frames[-1])
        assert len(two_regions.runs(request_id)) == 1


def test_a_request_written_in_one_region_reaches_the_others_replica(
    two_regions: TwoRegions,
) -> None:
    us, eu = two_regions.region(US), two_regions.region(EU)
    user = two_regions.user_homed_in(US)
    request_id = unique("report")
    us.run_request(user, request_id, "generate_report", SHORT_REPORT)
    replicated = run(
        eventually(
            _async(lambda: eu.request(TENANT, user, request_id)),
            lambda item: item is not None and item["status"] == "COMPLETED",
        )
    )
    assert replicated["result"] == us.request(TENANT, user, request_id)["result"]


def test_an_isolated_replica_gets_the_writes_it_missed_once_reconnected(
    two_regions: TwoRegions,
) -> None:
    us, eu = two_regions.region(US), two_regions.region(EU)
    table = two_regions.stack.ready["tables"]["connections"]
    key = {"connection_id": {"S": unique("replicated")}}
    two_regions.isolate(EU)
    us.stack.client("dynamodb").put_item(TableName=table, Item={**key, "user_id": {"S": "nobody"}})
    # The write is in its own replica, and cannot have left it.
    assert us.stack.client("dynamodb").get_item(TableName=table, Key=key, ConsistentRead=True)
    assert "Item" not in eu.stack.client("dynamodb").get_item(
        TableName=table, Key=key, ConsistentRead=True
    )
    assert two_regions.state()["replication"]["isolated"] == [EU]
    two_regions.reconnect(EU)
    item = run(
        eventually(
            _async(
                lambda: (
                    eu.stack.client("dynamodb")
                    .get_item(TableName=table, Key=key, ConsistentRead=True)
                    .get("Item")
                )
            ),
            lambda found: found is not None,
        )
    )
    assert item["user_id"] == {"S": "nobody"}


def test_a_stopped_region_is_gone_while_the_other_answers_until_it_starts_again(
    two_regions: TwoRegions,
) -> None:
    us, eu = two_regions.region(US), two_regions.region(EU)
    token = two_regions.stack.dev_token
    eu_user = two_regions.user_homed_in(EU)
    running = unique("long")

    async def start_long_run() -> None:
        async with eu.connect(eu_user) as socket:
            await ask(socket, {"action": "generate_report", "id": running, "payload": LONG_REPORT})
            await eventually(_async(lambda: two_regions.runs(running)), lambda runs: len(runs) == 1)

    # GIVEN a request running in eu-west-1's processor
    run(start_long_run())
    (started,) = two_regions.runs(running)
    # WHEN eu-west-1 stops, as in an outage
    state = two_regions.stop(EU)
    assert state["regions"][EU] == {"state": "stopped", "pid": None}
    # THEN its gateway refuses connections, its HTTP port is closed, and the worker that
    # ran the request is gone with the rest of the region
    assert _refuses_connections(eu)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(eu.stack.ready["faults_url"], timeout=5)
    assert _dies(started["pid"])
    # AND us-east-1 answers sync and async actions
    assert _echo(us, token)["type"] == "response"
    us_request = unique("report")
    frames = us.run_request(
        two_regions.user_homed_in(US), us_request, "generate_report", SHORT_REPORT
    )
    assert frames[-1]["status"] == "COMPLETED"
    # AND eu-west-1's replica is still there: it holds what us-east-1 just wrote
    run(
        eventually(
            _async(lambda: eu.stack.items("requests")),
            lambda items: any(us_request in str(item) for item in items),
        )
    )
    # WHEN it starts again, on the same URLs
    assert two_regions.start(EU)["regions"][EU]["state"] == "running"
    # THEN it answers both kinds of actions
    assert _echo(eu, token)["type"] == "response"
    eu_request = unique("report")
    frames = eu.run_request(eu_user, eu_request, "generate_report", SHORT_REPORT)
    assert frames[-1]["status"] == "COMPLETED"


def test_a_gracefully_stopped_region_refuses_connections_and_starts_again(
    two_regions: TwoRegions,
) -> None:
    us = two_regions.region(US)
    two_regions.stop(US, graceful=True)
    assert _refuses_connections(us)
    two_regions.start(US)
    assert _echo(us, two_regions.stack.dev_token)["type"] == "response"


@pytest.mark.parametrize(
    ("command", "fields"),
    [
        ("region", {"region": "ap-south-1", "state": "stopped"}),
        ("region", {"region": US, "state": "paused"}),
        ("region", {"region": US}),
        ("replication", {"lag_s": -1}),
        ("replication", {"region": EU}),
        ("replication", {"region": "ap-south-1", "connected": False}),
    ],
)
def test_the_control_api_refuses_commands_it_cannot_carry_out(
    two_regions: TwoRegions, command: str, fields: dict
) -> None:
    with pytest.raises(FaultRefused) as refused:
        two_regions.control(command, **fields)
    assert refused.value.status == 400
    assert refused.value.answer["message"]
    assert {r["state"] for r in two_regions.state()["regions"].values()} == {"running"}


def test_the_replication_lag_changes_at_runtime(two_regions: TwoRegions) -> None:
    assert two_regions.set_lag(2)["replication"]["lag_s"] == 2
    assert two_regions.set_lag(0)["replication"]["lag_s"] == 0


def _async(read):
    async def probe():
        return read()

    return probe
