"""Where a 1-client echo's round trip goes: each process's CPU per message, and pinning.

`python -m bench.pipeline [--runs N] [--seconds S]` runs the bare echo server
and the local stack (worker processes) as section 1 does, one client each,
and alternates runs of both in three placements of the stack's processes:

- `free`: the scheduler places every process (section 1's setting);
- `one core`: the stack, the bare echo and this client all on CPU 0;
- `apart`: the stack's process (the gateway) on CPU 0, its function workers
  on CPU 1, the clients free.

For each run it prints the messages a second of both servers and their
ratio, and the CPU each process spent per message (user + system, read from
`/proc`): the gateway (every thread of the stack's process), the function
workers together, the DynamoDB emulator, the bare echo server, and this
client. If the stack answers as fast on one core as on two, a frame's path is
serial and its time is the sum of those CPU figures; if `apart` is faster,
the processes' placement costs time. A diagnostic for section 1's target,
not one of its figures: it writes nothing.

`python -m bench.pipeline --against DIR` compares two trees instead: this
checkout's stack and the one in DIR (another checkout, such as `git worktree
add DIR COMMIT`), placed freely, in alternating runs beside one bare echo. For
each it prints the messages a second, the ratio to the bare echo's run beside
it, and the CPU per message of its gateway, its workers and this client; then
the median of the per-round ratios of this tree's messages a second to DIR's.
A change of a few percent needs that: runs of one tree alone drift by more
between hours on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from bench import processes, wire
from bench.sync_round_trip import FRAME, UNLIMITED

PLACEMENTS = ("free", "one core", "apart")
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _tree(pid: int) -> list[int]:
    pids = [pid]
    for child in _children(pid):
        pids += _tree(child)
    return pids


def _cpu_s(pids: list[int]) -> float:
    """User plus system CPU of `pids` (every thread of each), 0 for one gone."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) * _TICK_S
    return total


def _pin(pids: list[int], cpus: set[int]) -> None:
    for pid in pids:
        try:
            threads = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
        except OSError:
            continue
        for thread in threads:
            try:
                os.sched_setaffinity(thread, cpus)
            except OSError:
                continue


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Roles:
    """The processes whose CPU is read, by role, and where they are placed."""

    def __init__(self, stack: processes.Server, bare: processes.Server) -> None:
        children = _children(stack.pid)
        commands = {c: Path(f"/proc/{c}/cmdline").read_bytes() for c in children}
        self.gateway = [stack.pid]
        self.workers = [w for c in children if b"zygote" in commands[c] for w in _tree(c)]
        self.emulator = [c for c in children if b"zygote" not in commands[c]]
        self.bare = _tree(bare.pid)
        #: Where this process may run: every placement but `free` narrows it.
        self._allowed = os.sched_getaffinity(0)

    def placed(self, placement: str) -> None:
        everyone = [self.gateway, self.workers, self.emulator, self.bare, [os.getpid()]]
        for group in everyone:
            _pin(group, {0} if placement == "one core" else self._allowed)
        if placement == "apart":
            _pin(self.gateway, {0})
            _pin(self.workers, {1})


async def _run(socket, seconds: float, groups: list[list[int]]) -> tuple[int, list[float], float]:
    """One run's messages, and the CPU seconds each group and this client spent on them."""
    before, own_before = [_cpu_s(g) for g in groups], _own_cpu_s()
    messages = len(await wire.round_trips(socket, FRAME, time.monotonic() + seconds))
    spent = [_cpu_s(g) - b for g, b in zip(groups, before, strict=True)]
    return messages, spent, _own_cpu_s() - own_before


async def _measure(stack: processes.Server, bare: processes.Server, runs: int, seconds: float):
    stack_socket = await wire.open_connection(stack.url(stack.token("pipeline")))
    bare_socket = await wire.open_connection(bare.websocket_url)
    await wire.round_trips(stack_socket, FRAME, time.monotonic() + 1)
    # Read once the first messages have started the workers.
    roles = _Roles(stack, bare)
    rows: dict[str, list[dict]] = {p: [] for p in PLACEMENTS}
    try:
        for run in range(runs):
            for placement in PLACEMENTS[run % 3 :] + PLACEMENTS[: run % 3]:
                roles.placed(placement)
                messages, (gateway, workers, emulator), client = await _run(
                    stack_socket, seconds, [roles.gateway, roles.workers, roles.emulator]
                )
                bare_messages, (bare_server,), bare_client = await _run(
                    bare_socket, seconds, [roles.bare]
                )
                per, bare_per = 1e6 / messages, 1e6 / bare_messages
                rows[placement].append(
                    {
                        "stack": messages / seconds,
                        "bare": bare_messages / seconds,
                        "ratio": messages / bare_messages,
                        "gateway": gateway * per,
                        "workers": workers * per,
                        "emulator": emulator * per,
                        "client": client * per,
                        "bare server": bare_server * bare_per,
                        "bare client": bare_client * bare_per,
                    }
                )
    finally:
        roles.placed("free")
        await wire.close_all([stack_socket, bare_socket])
    return rows


async def _compare(
    stacks: dict[str, processes.Server], bare: processes.Server, runs: int, seconds: float
) -> dict[str, list[dict]]:
    """Alternating runs of each stack, one client each, every run beside a bare one."""
    sockets = {
        name: await wire.open_connection(stack.url(stack.token("pipeline")))
        for name, stack in stacks.items()
    }
    bare_socket = await wire.open_connection(bare.websocket_url)
    for socket in sockets.values():
        await wire.round_trips(socket, FRAME, time.monotonic() + 1)
    roles = {name: _Roles(stack, bare) for name, stack in stacks.items()}
    rows: dict[str, list[dict]] = {name: [] for name in stacks}
    names = list(stacks)
    try:
        for run in range(runs):
            for name in names[run % len(names) :] + names[: run % len(names)]:
                messages, (gateway, workers), client = await _run(
                    sockets[name], seconds, [roles[name].gateway, roles[name].workers]
                )
                bare_messages, _, _ = await _run(bare_socket, seconds, [])
                per = 1e6 / messages
                rows[name].append(
                    {
                        "stack": messages / seconds,
                        "ratio": messages / bare_messages,
                        "gateway": gateway * per,
                        "workers": workers * per,
                        "client": client * per,
                    }
                )
    finally:
        await wire.close_all([*sockets.values(), bare_socket])
    return rows


def _print(rows: dict[str, list[dict]], label: str = "placement") -> None:
    columns = list(next(iter(rows.values()))[0])
    width = max(10, *(len(name) + 1 for name in rows))
    print("medians of the runs; CPU in us per message")
    print(f"{label:{width}s}" + "".join(f"{c:>13s}" for c in columns))
    for name, runs in rows.items():
        medians = [statistics.median(r[c] for r in runs) for c in columns]
        cells = "".join(
            f"{m:13.3f}" if c == "ratio" else f"{m:13.0f}"
            for c, m in zip(columns, medians, strict=True)
        )
        print(f"{name:{width}s}{cells}")


def _print_comparison(rows: dict[str, list[dict]]) -> None:
    _print(rows, "tree")
    this, other = (rows[name] for name in rows)
    rounds = [a["stack"] / b["stack"] for a, b in zip(this, other, strict=True)]
    print(
        f"this tree / the other, messages a second: median {statistics.median(rounds):.3f} "
        f"over {len(rounds)} rounds (least {min(rounds):.3f}, most {max(rounds):.3f})"
    )


def _compare_trees(other: Path, runs: int, seconds: float) -> None:
    if not (other / "local" / "__main__.py").exists():
        raise SystemExit(f"{other} is not a checkout of this project")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as work:
        directory = Path(work)
        with (
            processes.echo_server(directory / "echo-server") as bare,
            processes.local_stack(directory / "this", env=UNLIMITED) as this,
            processes.local_stack(directory / "other", env=UNLIMITED, tree=other) as that,
        ):
            stacks = {"this tree": this, str(other): that}
            _print_comparison(asyncio.run(_compare(stacks, bare, runs, seconds)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument(
        "--against", type=Path, metavar="DIR", help="compare with the stack of this checkout"
    )
    args = parser.parse_args()
    if args.against is not None:
        _compare_trees(args.against.resolve(), args.runs, args.seconds)
        return
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs two CPUs to compare placements")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as work:
        directory = Path(work)
        with (
            processes.echo_server(directory / "echo-server") as bare,
            processes.local_stack(directory / "stack", env=UNLIMITED) as stack,
        ):
            _print(asyncio.run(_measure(stack, bare, args.runs, args.seconds)))


if __name__ == "__main__":
    main()
