"""A pytest plugin that prints the suite's time per test layer.

The layers are the folders under tests/ (unit, functional, infra, local,
client, e2e, faults): a layer's time is the sum of its tests' setup, call and
teardown durations, so `make test` shows where the minutes go and whether the
unit layer still fits its budget (issue 19: `make unit` under 60 s).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath

import pytest

UNIT_BUDGET_S = 60.0


def layer_of(nodeid: str) -> str:
    """The tests/ folder a test id lives in (`tests/unit/test_x.py::t` -> `unit`)."""
    parts = PurePosixPath(nodeid.split("::", 1)[0]).parts
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"


class LayerTimes:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.tests: dict[str, set[str]] = defaultdict(set)

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        layer = layer_of(report.nodeid)
        self.seconds[layer] += report.duration
        self.tests[layer].add(report.nodeid)

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.seconds:
            return
        terminalreporter.section("time per layer")
        for layer in sorted(self.seconds, key=self.seconds.__getitem__, reverse=True):
            budget = f" (budget {UNIT_BUDGET_S:.0f} s)" if layer == "unit" else ""
            count, seconds = len(self.tests[layer]), self.seconds[layer]
            terminalreporter.write_line(f"{layer:<12}{count:>6} tests{seconds:>10.1f} s{budget}")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(LayerTimes(), "streamer-layer-times")
