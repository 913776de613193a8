"""`python -m bench`: measure Streamer against its baselines on this machine.

Runs every section (or those named with `--only`), prints the figures
against issue 7's targets, writes all of it to bench/results/<timestamp>.json
and regenerates docs/benchmarks.md from that file. A full run takes about
five minutes on two cores. `--quick` makes every section shorter, for trying
the harness; its figures are too thin to publish, so a quick run, like one
with `--only`, goes to bench/results/partial/ and leaves the doc alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import (
    async_path,
    cold_start,
    cost,
    document,
    machine,
    progress_batching,
    report,
    router_cpu,
    scale,
    scale_model,
    sync_round_trip,
)

#: In the order they run; the longest last.
SECTIONS = {
    "sync": sync_round_trip.run,
    "async": async_path.run,
    "progress": progress_batching.run,
    "cost": cost.run,
    "router_cpu": router_cpu.run,
    "hot_keys": scale_model.run,
    "cold_start": cold_start.run,
    "scale": scale.run,
}
RESULTS_DIR = machine.ROOT / "bench" / "results"
DOC = machine.ROOT / "docs" / "benchmarks.md"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run these sections")
    parser.add_argument("--quick", action="store_true", help="shorter runs; leaves the doc alone")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--render", type=Path, metavar="RESULTS_JSON", help="only regenerate the doc from a file"
    )
    return parser


def run_sections(names: list[str], quick: bool) -> dict:
    results: dict = {"machine": machine.describe(), "quick": quick, "seconds": {}}
    # Before any server starts, so the servers inherit it too.
    results["open_files_limit"] = scale.raise_open_files_limit()
    workdir = Path(tempfile.mkdtemp(prefix="streamer-bench-"))
    started = time.perf_counter()
    try:
        for name in names:
            print(f"bench: {name} ...", flush=True)
            section_started = time.perf_counter()
            try:
                results[name] = SECTIONS[name](workdir, quick)
            except Exception as error:
                traceback.print_exc()
                results[name] = {"error": f"{type(error).__name__}: {error}"}
            results["seconds"][name] = round(time.perf_counter() - section_started, 1)
            print(f"bench: {name} took {results['seconds'][name]} s", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["seconds"]["total"] = round(time.perf_counter() - started, 1)
    results["verdicts"] = report.verdicts(results)
    return results


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.render is not None:
        path = args.render.resolve()
        DOC.write_text(document.render(json.loads(path.read_text()), path))
        print(f"bench: wrote {DOC}")
        return 0
    names = args.only or list(SECTIONS)
    results = run_sections(names, args.quick)
    complete = not args.quick and not args.only
    # Partial runs are kept apart (and out of git): only complete runs are published.
    directory = args.results_dir if complete else args.results_dir / "partial"
    directory.mkdir(parents=True, exist_ok=True)
    stamp = results["machine"]["date"].replace(":", "").replace("-", "")
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"bench: wrote {path}")
    if complete:
        DOC.write_text(document.render(results, path))
        print(f"bench: wrote {DOC}")
    print()
    print(report.console(results))
    failed = [name for name in names if "error" in results.get(name, {})]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
