"""The multi-region stack's fault API: stop and start a region, change the replication.

Served by the multi-region stack's own process (`python -m local --regions ...
--faults`) at `control_url` (`/_faults` on a port of its own), so a stopped
region's ports really are closed while the API still answers:

- `GET /_faults`: every region's state and the replication's.
- `POST /_faults/region {"region": R, "state": "stopped"|"running", "graceful": false}`:
  stopped = the region's functions and gateway are gone (its process group is
  killed, as in an outage: no `$disconnect`, invocations die mid-run; with
  `"graceful": true` it is stopped as SIGTERM stops a stack); its DynamoDB
  replica keeps answering and replicating. running = started again on the same
  ports with the same API id; the answer comes once it is ready.
- `POST /_faults/replication {"lag_s": S}` and/or `{"region": R, "connected": bool}`:
  the lag from then on; cut a replica off from replication, or reconnect it.

Answers are JSON (the state after the command); a command it cannot carry out is
400 with a `message`, a region that fails to start again 500.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from local.faults import PREFIX, BadCommand
from local.management import HttpResponse

RUNNING = "running"
STOPPED = "stopped"
STATES = (RUNNING, STOPPED)


class RegionFailed(RuntimeError):
    """A region did not start again (its port was taken meanwhile, say); the message says why."""


class Regions(Protocol):
    """What the API drives: the multi-region stack."""

    def state(self) -> dict[str, Any]: ...

    def set_region(self, region: str, state: str, graceful: bool) -> None: ...

    def set_replication(
        self, lag_s: float | None, region: str | None, connected: bool | None
    ) -> None: ...


def _json(status: int, content: Any) -> HttpResponse:
    return HttpResponse(status, json.dumps(content).encode(), {"Content-Type": "application/json"})


def _command(body: bytes) -> dict:
    try:
        command = json.loads(body or b"{}")
    except ValueError:
        raise BadCommand("the body must be a JSON object") from None
    if not isinstance(command, dict):
        raise BadCommand("the body must be a JSON object")
    return command


def _optional(command: dict, name: str, kinds: tuple[type, ...], described: str) -> Any:
    value = command.get(name)
    # A bool is an int to Python, not to JSON.
    if value is not None and (type(value) not in kinds):
        raise BadCommand(f"{name} must be {described}")
    return value


def region_command(command: dict) -> tuple[str, str, bool]:
    """The region, the state it must be in, and whether to stop it gracefully."""
    region = _optional(command, "region", (str,), "a string")
    state = _optional(command, "state", (str,), "a string")
    graceful = _optional(command, "graceful", (bool,), "a boolean")
    if region is None or state is None:
        raise BadCommand("region and state are required")
    if state not in STATES:
        raise BadCommand(f"state must be one of {list(STATES)}")
    return region, state, bool(graceful)


def replication_command(command: dict) -> tuple[float | None, str | None, bool | None]:
    """The new lag, and a region to cut off or reconnect; at least one of them."""
    lag_s = _optional(command, "lag_s", (int, float), "a number")
    region = _optional(command, "region", (str,), "a string")
    connected = _optional(command, "connected", (bool,), "a boolean")
    if lag_s is not None and lag_s < 0:
        raise BadCommand("lag_s must be at least 0")
    if (region is None) != (connected is None):
        raise BadCommand("region and connected go together")
    if lag_s is None and region is None:
        raise BadCommand("give lag_s, or region and connected")
    return (None if lag_s is None else float(lag_s)), region, connected


def handle(regions: Regions, method: str, path: str, body: bytes) -> HttpResponse:
    """Answer one request to the control server (every path is its)."""
    route = path.split("?", 1)[0]
    if route.rstrip("/") == PREFIX and method == "GET":
        return _json(200, regions.state())
    try:
        if method == "POST" and route == f"{PREFIX}/region":
            region, state, graceful = region_command(_command(body))
            regions.set_region(region, state, graceful)
        elif method == "POST" and route == f"{PREFIX}/replication":
            regions.set_replication(*replication_command(_command(body)))
        else:
            return _json(404, {"message": f"no fault {method} {route}"})
    except (BadCommand, ValueError) as error:
        return _json(400, {"message": str(error)})
    except RegionFailed as error:
        return _json(500, {"message": str(error)})
    return _json(200, regions.state())
