"""A fresh process's cold start: `python -m bench.probe HANDLER EVENT_FILE [WARM]`.

Times, from this module's first line, the import of `HANDLER`'s module
(`package.module.function`, as Lambda names it) and its first invocation
with the event in EVENT_FILE, then WARM more invocations; prints the times
(wall clock, and the process's CPU time) as one JSON line. `python -m bench.probe
baseline` times what every Python function pays anyway: importing boto3 and
creating one client.

Only the standard library is imported before the clock starts.
"""

import time

_STARTED = time.perf_counter()
_CPU_STARTED = time.process_time()

import importlib  # noqa: E402
import sys  # noqa: E402


class _Context:
    """The parts of Lambda's context object the entry points read."""

    function_name = "bench-probe"
    memory_limit_in_mb = "512"
    aws_request_id = "bench-probe"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-probe"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def _elapsed_ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


def _timings(imported: float, imported_cpu: float) -> dict:
    """Wall and CPU time of the import and of what followed it, in ms."""
    return {
        "import_ms": (imported - _STARTED) * 1000,
        "first_ms": _elapsed_ms(imported),
        "import_cpu_ms": (imported_cpu - _CPU_STARTED) * 1000,
        "first_cpu_ms": (time.process_time() - imported_cpu) * 1000,
    }


def _baseline() -> dict:
    import boto3

    imported, imported_cpu = time.perf_counter(), time.process_time()
    boto3.client("dynamodb")
    return _timings(imported, imported_cpu)


def _entry_point(handler_name: str, event_file: str, warm: int) -> dict:
    with open(event_file, encoding="utf-8") as file:
        raw_event = file.read()
    module_name, _, function_name = handler_name.rpartition(".")
    handler = getattr(importlib.import_module(module_name), function_name)
    imported, imported_cpu = time.perf_counter(), time.process_time()
    import json

    handler(json.loads(raw_event), _Context())
    timings = _timings(imported, imported_cpu)
    if warm:
        runs = []
        for _ in range(warm):
            started = time.perf_counter()
            handler(json.loads(raw_event), _Context())
            runs.append(_elapsed_ms(started))
        runs.sort()
        timings["warm_ms"] = runs[len(runs) // 2]
    return timings


def main(argv: list[str]) -> None:
    if argv[0] == "baseline":
        timings = _baseline()
    else:
        timings = _entry_point(argv[0], argv[1], int(argv[2]) if len(argv) > 2 else 0)
    timings["total_ms"] = timings["import_ms"] + timings["first_ms"]
    timings["total_cpu_ms"] = timings["import_cpu_ms"] + timings["first_cpu_ms"]
    import json

    print(json.dumps(timings), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
