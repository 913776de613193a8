"""The two-region local stack: `python -m local --regions us-east-1,eu-west-1 --faults`.

`two_regions` is one stack for the session (started by the e2e suite's
`start_stack`, waiting for its ready file), handed to each test with both
regions running, the replication lag back at `LAG_S` and every replica
connected. It runs the fault suite's app (`tests.faults.app`, which journals
every handler run, plus `environment`: `tests.regions.app`) with the fault
suite's short timings, so takeovers and re-drives happen within seconds.

    def test_x(two_regions):
        us, eu = two_regions.region(US), two_regions.region(EU)  # a FaultyStack each
        user = two_regions.user_homed_in(US)     # its requests are decided in us-east-1
        two_regions.stop(US)                     # an outage: functions gone, table kept
        two_regions.start(US)                    # back on the same URLs
        two_regions.set_lag(2.0)                 # replication lag from now on
        two_regions.isolate(EU) / reconnect(EU)  # cut a replica off from replication
        two_regions.runs(request_id)             # handler runs in either region
"""

from __future__ import annotations

import contextlib
import itertools
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streamer import config, keys, regions
from tests.e2e.conftest import LocalStack, start_stack
from tests.faults.app import RUN_LOG, STARTED
from tests.faults.conftest import (
    LEASE_MARGIN_S,
    PROCESSOR_TIMEOUT_S,
    TENANT,
    FaultyStack,
    post_command,
)

US, EU = "us-east-1", "eu-west-1"
REGIONS = (US, EU)
#: The replication lag each test starts with.
LAG_S = 0.5
SWEEP_INTERVAL_S = 0.5


@dataclass
class TwoRegions:
    """A running two-region stack, and the control API that stops regions and bends replication."""

    stack: LocalStack
    journal: Path

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(self.stack.ready["regions"])

    def region(self, name: str) -> FaultyStack:
        """One region, as the fault suite sees a stack: its URLs, tables, `/_faults` API."""
        ready = {**self.stack.ready, **self.stack.ready["regions"][name], "region": name}
        return FaultyStack(LocalStack(ready, self.stack.process, self.stack.log_file), self.journal)

    def user_homed_in(self, region: str, prefix: str = "user") -> str:
        """A new user of `TENANT` whose requests are decided in `region` (its home region)."""
        for number in itertools.count():
            user = f"{prefix}-{number}-{id(self):x}"
            if regions.home_region(keys.owner_key(TENANT, user), self.regions) == region:
                return user
        raise AssertionError("unreachable")

    def control(self, command: str | None = None, **fields: Any) -> dict:
        """POST a command to the control API (`/_faults/{command}`), or GET its state."""
        url = self.stack.ready["control_url"]
        if command is not None:
            # Starting a region waits for it to be ready.
            return post_command(f"{url}/{command}", fields, timeout=120)
        with urllib.request.urlopen(url, timeout=120) as answer:
            return json.load(answer)

    def state(self) -> dict:
        return self.control()

    def stop(self, region: str, graceful: bool = False) -> dict:
        """Stop a region's functions and gateway (killed, as in an outage, unless graceful);
        its table stays reachable and replicating."""
        return self.control("region", region=region, state="stopped", graceful=graceful)

    def start(self, region: str) -> dict:
        """Start a stopped region again, on the same ports; returns once it is ready."""
        return self.control("region", region=region, state="running")

    def set_lag(self, seconds: float) -> dict:
        return self.control("replication", lag_s=seconds)

    def isolate(self, region: str) -> dict:
        return self.control("replication", region=region, connected=False)

    def reconnect(self, region: str) -> dict:
        return self.control("replication", region=region, connected=True)

    def restore(self) -> None:
        """Every region running, every replica connected, the lag back at `LAG_S`."""
        state = self.state()
        for region, status in state["regions"].items():
            if status["state"] != "running":
                self.start(region)
        for region in state["replication"]["isolated"]:
            self.reconnect(region)
        self.set_lag(LAG_S)

    def runs(self, request_ids: set[str] | str, phase: str = STARTED) -> list[dict]:
        """Handler runs of these requests in any region, in the order they started
        (`FINISHED`: those whose handler returned, in the order they did)."""
        return self.region(self.regions[0]).runs(request_ids, phase)


@contextlib.contextmanager
def start_regions(directory: Path, *args: str) -> Iterator[TwoRegions]:
    """Run the two-region stack with the fault suite's app and timings, plus `args`."""
    journal = directory / "runs.jsonl"
    with contextlib.ExitStack() as running:
        # The stack reads these when it starts; later stacks of the session must not.
        with pytest.MonkeyPatch.context() as environment:
            environment.setenv(config.LEASE_MARGIN_S, str(LEASE_MARGIN_S))
            environment.setenv(RUN_LOG, str(journal))
            environment.setenv(config.CIRCUIT_FAILURE_RATIO, "0")
            stack = running.enter_context(
                start_stack(
                    directory,
                    "--regions",
                    ",".join(REGIONS),
                    "--replication-lag",
                    str(LAG_S),
                    "--faults",
                    "--app",
                    "tests.regions.app",
                    "--processor-timeout",
                    str(PROCESSOR_TIMEOUT_S),
                    "--sweep-interval",
                    str(SWEEP_INTERVAL_S),
                    "--parallelization-factor",
                    "2",
                    "--batch-size",
                    "3",
                    "--function-concurrency",
                    "4",
                    *args,
                )
            )
        yield TwoRegions(stack, journal)


@pytest.fixture(scope="session")
def two_regions_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoRegions]:
    with start_regions(tmp_path_factory.mktemp("two-regions")) as stack:
        yield stack


@pytest.fixture
def two_regions(two_regions_stack: TwoRegions) -> TwoRegions:
    """The session's two-region stack, both regions running, replication as it starts."""
    two_regions_stack.restore()
    return two_regions_stack
