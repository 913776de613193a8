"""How `python -m local --regions` places its regions and configures their functions.

The stack itself runs in tests/regions; here, the decisions it makes from its
options: each region's ports, what every function of every region is told,
the control API's commands, and the command line's refusals.
"""

from __future__ import annotations

import json

import pytest

from local import multiregion
from local.__main__ import main
from local.faults import BadCommand
from local.multiregion import RegionsOptions, place_regions, region_environment
from local.region_control import region_command, replication_command
from local.stack import StackOptions
from streamer import config
from streamer.endpoints import parse_overrides

US, EU = "us-east-1", "eu-west-1"
ENDPOINTS = {US: "http://127.0.0.1:4001", EU: "http://127.0.0.1:4002"}


def options(**stack: object) -> RegionsOptions:
    return RegionsOptions(stack=StackOptions(**stack), regions=(US, EU))


def test_regions_take_consecutive_port_pairs_from_the_given_port() -> None:
    places = place_regions(options(port=9000))
    assert [(p.region, p.port, p.http_port) for p in places] == [
        (US, 9000, 9001),
        (EU, 9002, 9003),
    ]


def test_an_http_port_given_is_the_first_regions_and_the_next_ones_follow() -> None:
    places = place_regions(options(port=9000, http_port=9500))
    assert [p.http_port for p in places] == [9500, 9502]


def test_port_zero_gives_every_region_free_ports_of_its_own() -> None:
    places = place_regions(options(port=0))
    ports = [port for p in places for port in (p.port, p.http_port)]
    assert len(set(ports)) == 4
    assert 0 not in ports


def test_every_function_can_reach_every_regions_api_and_table() -> None:
    opts = options(port=9000)
    environment = region_environment(opts, ENDPOINTS, place_regions(opts))
    assert environment[multiregion.REGIONS_ENV] == "us-east-1,eu-west-1"
    assert json.loads(environment[multiregion.TABLE_ENDPOINTS_ENV]) == ENDPOINTS
    assert parse_overrides(environment[config.MANAGEMENT_ENDPOINT]) == {
        "local-us-east-1": "http://127.0.0.1:9001",
        "local-eu-west-1": "http://127.0.0.1:9003",
    }
    # One secret: a watch token handed out in one region is good in the other.
    assert environment[config.WATCH_TOKEN_SECRET]


def test_takeover_timings_follow_the_sweep_interval_unless_given() -> None:
    opts = options(sweep_interval_s=0.5)
    environment = region_environment(opts, ENDPOINTS, place_regions(opts))
    assert environment[multiregion.SWEEP_INTERVAL_ENV] == "0.5"
    assert environment[multiregion.HEARTBEAT_STALE_ENV] == "1.5"
    assert environment[multiregion.TAKEOVER_GRACE_ENV] == "1"
    given = RegionsOptions(
        stack=StackOptions(sweep_interval_s=5),
        regions=(US, EU),
        heartbeat_stale_s=4,
        takeover_grace_s=0.25,
    )
    environment = region_environment(given, ENDPOINTS, place_regions(given))
    assert environment[multiregion.SWEEP_INTERVAL_ENV] == "5"
    assert environment[multiregion.HEARTBEAT_STALE_ENV] == "4"
    assert environment[multiregion.TAKEOVER_GRACE_ENV] == "0.25"


def test_region_commands_name_a_region_and_a_state() -> None:
    assert region_command({"region": EU, "state": "stopped"}) == (EU, "stopped", False)
    assert region_command({"region": EU, "state": "stopped", "graceful": True}) == (
        EU,
        "stopped",
        True,
    )
    for bad in (
        {"region": EU},
        {"state": "running"},
        {"region": EU, "state": "paused"},
        {"region": EU, "state": "running", "graceful": 1},
    ):
        with pytest.raises(BadCommand):
            region_command(bad)


def test_replication_commands_set_the_lag_or_cut_a_region_off() -> None:
    assert replication_command({"lag_s": 2}) == (2.0, None, None)
    assert replication_command({"region": EU, "connected": False}) == (None, EU, False)
    for bad in ({}, {"lag_s": -0.1}, {"lag_s": True}, {"region": EU}, {"connected": True}):
        with pytest.raises(BadCommand):
            replication_command(bad)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--replication-lag", "1"], "--replication-lag needs --regions"),
        (["--takeover-grace", "1"], "--takeover-grace needs --regions"),
        (["--regions", f"{US},{EU}", "--region", US], "not allowed with argument"),
        (
            ["--regions", f"{US},{EU}", "--dynamodb-endpoint", "http://127.0.0.1:1"],
            "each region starts its own DynamoDB",
        ),
        (["--regions", f"{US},{EU}", "--replication-lag", "-1"], "must be at least 0"),
    ],
)
def test_the_command_line_refuses_options_that_do_not_go_together(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_one_region_is_no_multi_region_stack(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--regions", US, "--port", "0"]) == 2
    assert "at least two different regions" in capsys.readouterr().err
