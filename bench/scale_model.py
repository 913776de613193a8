"""Section 7: the hottest partition key of each table and index, projected to a region's load.

DynamoDB serves at most about 1,000 write units and 3,000 read units a
second per partition, and one partition key value is never split across
partitions by its writes (the key's own item collection goes to one
partition), on a global secondary index as on a table; an index that cannot
keep up throttles the table's writes
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/warm-throughput-scenarios.html,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/throttling-key-range-limit-exceeded-mitigation.html,
https://repost.aws/knowledge-center/dynamodb-gsi-throttling-table).

`run` starts the local stack under `bench.counting` with its ledger on
(`BENCH_LEDGER`: one line per DynamoDB call with its table, index, partition
key value and capacity units), runs each scenario, and keeps the ledger's
lines of each. `project` (pure) turns them into the hottest key value's
write and read units a second at the target load, by what each key is one
of: a request's, a connection's, a user's, a region's (the due index's,
spread over its shards), an action's (the circuit breaker's items, written
once a second per Lambda instance).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import prices, processes, wire
from bench.cost import Counts
from bench.counting import LEDGER, WRITES, item_size
from components.settings import DEFAULT_RESERVED_CONCURRENCY, RuntimeTuning
from streamer import schema
from streamer.config import MAX_ACTIVE_REQUESTS, Settings
from streamer.keys import due_shard

#: The target: per region, async requests and sync messages a second (issue 15).
ASYNC_PER_S = 10_000
SYNC_PER_S = 1_000
#: What one partition key value serves a second (see the module's docstring).
MAX_WCU_PER_KEY = 1_000
MAX_RCU_PER_KEY = 3_000
#: The busiest connection, and the busiest user (one connection), send at the rate limit.
CONNECTION_PER_S = Settings.rate_limit_per_s
#: Lambda's default concurrency quota per account and region, every function together
#: (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
ACCOUNT_CONCURRENCY = 1_000
#: Concurrent requests per async scenario, each on a connection (and a user) of its own.
ASYNC_REQUESTS = 5
SYNC_REQUESTS = 20
SYNC_PACE_S = 0.07

REQUEST, CONNECTION, USER, REGION, ACTION = "request", "connection", "user", "region", "action"
#: What a key is one of, by the attribute that holds it.
KIND_OF_ATTRIBUTE = {
    "request_key": REQUEST,
    "connection_id": CONNECTION,
    "user_key": USER,
    "active_owner": USER,
    "due_region": REGION,
}
HASH_KEYS = {
    ("connections", None): "connection_id",
    ("connections", "by_user"): "user_key",
    ("requests", None): "request_key",
    ("requests", "by_due"): "due_region",
    ("requests", "by_active_owner"): "active_owner",
    ("subscriptions", None): "request_key",
    ("subscriptions", "by_connection"): "connection_id",
}


def kind_of(table: str, index: str | None, key: str | None) -> str:
    """What one key value of this table or index is one of."""
    if table == "connections" and index is None and (key or "").startswith("circuit#"):
        return ACTION
    return KIND_OF_ATTRIBUTE[HASH_KEYS[(table, index)]]


@dataclass(frozen=True)
class Use:
    """Capacity units one scenario's calls spent on one table or index, by key kind."""

    table: str
    index: str | None
    kind: str
    capacity: str  # "write" or "read"
    #: Units a request (or message) spends there, all keys of this kind together.
    per_request: float
    #: The most units one key value of this kind received in the whole scenario.
    most_on_one_key: float


def uses(lines: list[dict], requests: int) -> list[Use]:
    """Sum a scenario's ledger lines by table, index, key kind and capacity."""
    totals: dict[tuple, float] = defaultdict(float)
    per_key: dict[tuple, float] = defaultdict(float)

    def add(table: str, index: str | None, key: str | None, capacity: str, units: float) -> None:
        group = (table, index, kind_of(table, index, key), capacity)
        totals[group] += units
        per_key[(*group, key)] += units

    for line in lines:
        if line["op"] == "Scan":
            # The sweeper's scan of the cap's index reads every partition of it in turn, not
            # one key, once a minute whatever the rate: `cap_index_scan` models it.
            continue
        capacity = "write" if line["op"] in WRITES else "read"
        add(line["table"], line["index"], line["key"], capacity, line["units"])
        for index, units in line.get("index_units", {}).items():
            add(line["table"], index, line.get("index_keys", {}).get(index), capacity, units)
    return [
        Use(
            *group,
            per_request=total / requests,
            most_on_one_key=max(v for k, v in per_key.items() if k[:4] == group),
        )
        for group, total in sorted(totals.items(), key=lambda g: tuple(map(str, g[0])))
        if total
    ]


def hottest_shard_share(shards: int, keys_per_s: int) -> float:
    """The busiest shard's share of a second's request keys, hashed as `keys.due_shard` does."""
    counts = [0] * shards
    for n in range(keys_per_s):
        counts[due_shard(f"tenant#user-{n % 997}#req-{n}", shards)] += 1
    return max(counts) / keys_per_s


def hottest_per_s(
    use: Use, rate_per_s: float, shards: int, instances: float, count_shards: int = 1
) -> float:
    """The units a second the hottest key value of `use` needs at `rate_per_s` requests.

    - a request's key: everything one request spends on it, as if within one second;
    - a connection's or a user's: one connection at the rate limit;
    - a region's: the whole region's, over the shards, the busiest shard's share;
    - an action's (circuit breaker): one write a second per Lambda instance, spread over
      the `count_shards` items of a bucket (`runtime.circuitCountShards`), and a read of
      half a unit (eventually consistent) of every item by every instance.
    """
    if use.kind == REQUEST:
        return use.most_on_one_key
    if use.kind in (CONNECTION, USER):
        return use.per_request * CONNECTION_PER_S
    if use.kind == REGION:
        return use.per_request * rate_per_s * hottest_shard_share(shards, int(rate_per_s))
    if use.capacity == "write":
        return instances / max(1, count_shards)
    return instances * 0.5


@dataclass(frozen=True)
class Row:
    table: str
    index: str | None
    kind: str
    wcu_before: float
    wcu_after: float
    rcu_before: float
    rcu_after: float

    @property
    def met(self) -> bool:
        return self.wcu_after <= MAX_WCU_PER_KEY and self.rcu_after <= MAX_RCU_PER_KEY


def project(
    workloads: list[tuple[list[Use], float, float]], shards: int, before_shards: int = 1
) -> list[Row]:
    """The hottest key of each table, index and key kind at the target load, before and after.

    `workloads`: (uses of a scenario, its requests a second, Lambda instances it
    keeps busy). A region's and an action's keys are shared by every workload,
    so their loads add up; a request's, a connection's and a user's belong to
    one workload each, so the busiest counts.
    """
    shared = (REGION, ACTION)
    found: dict[tuple, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for scenario_uses, rate, instances in workloads:
        for use in scenario_uses:
            group = (use.table, use.index, use.kind)
            for label, count in (("before", before_shards), ("after", shards)):
                value = hottest_per_s(use, rate, count, instances)
                name = f"{use.capacity}_{label}"
                if use.kind in shared:
                    found[group][name] += value
                else:
                    found[group][name] = max(found[group][name], value)
    for (_, _, kind), v in found.items():
        if kind == ACTION:
            # However many workloads share the region, its instances stay under the quota.
            for name in list(v):
                v[name] = min(v[name], ACCOUNT_CONCURRENCY * (1.0 if "write" in name else 0.5))
    return [
        Row(
            table,
            index,
            kind,
            wcu_before=v["write_before"],
            wcu_after=v["write_after"],
            rcu_before=v["read_before"],
            rcu_after=v["read_after"],
        )
        for (table, index, kind), v in sorted(found.items(), key=lambda g: tuple(map(str, g[0])))
    ]


def per_request(lines: list[dict], requests: int) -> dict:
    """Writes and write units a request cost, by table and index (WRU: table and indexes)."""
    writes = [line for line in lines if line["op"] in WRITES]
    by_place: dict[str, float] = defaultdict(float)
    for line in writes:
        by_place[line["table"]] += line["units"] / requests
        for index, units in line.get("index_units", {}).items():
            by_place[f"{line['table']}.{index}"] += units / requests
    return {
        "writes": len(writes) / requests,
        "writes_by_table": {
            t: sum(1 for w in writes if w["table"] == t) / requests
            for t in sorted({w["table"] for w in writes})
        },
        "wru": sum(by_place.values()),
        "wru_by_place": dict(sorted(by_place.items())),
    }


# The run


def _read_ledger(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def instances(seconds_per_request: dict[str, float], rate: float) -> float:
    """Lambda instances a workload keeps busy at `rate` requests a second (Little's law:
    each function's invocation seconds a request times the rate), each function capped
    at its reserved concurrency and all of them at the region's concurrency quota.

    The seconds are this machine's, far longer than Lambda's (the local stack and
    its DynamoDB share two cores), so the count is an upper bound.
    """
    busy = 0.0
    for function, seconds in seconds_per_request.items():
        reserved = DEFAULT_RESERVED_CONCURRENCY.get(function.removeprefix("streamer-"))
        busy += min(seconds * rate, reserved) if reserved else seconds * rate
    return min(busy, ACCOUNT_CONCURRENCY)


def _seconds_per_request(before: dict, after: dict, requests: int) -> dict[str, float]:
    return {
        name: (v["seconds"] - before["invocations"].get(name, {}).get("seconds", 0.0)) / requests
        for name, v in after["invocations"].items()
    }


#: The scenario measured again on a stack with the per-user cap off
#: (`STREAMER_MAX_ACTIVE_REQUESTS=0`).
CAP_OFF = "async, no progress, per-user cap off"


async def _scenarios(
    stack: processes.Server, counts: Counts, ledger: Path, *, cap_off: bool = False
) -> dict:
    warm = await wire.open_connection(stack.url(stack.token("hot-warm-up")))
    await wire.call_async(warm, "work", "hot-warm", {"ms": 10, "reports": 2})
    await warm.close()
    results: dict = {}

    async def measured(name: str, requests: int, body) -> None:
        before, start = await counts.quiet(), len(_read_ledger(ledger))
        await body()
        after = await counts.quiet()
        results[name] = {
            "requests": requests,
            "lines": _read_ledger(ledger)[start:],
            "counts": (before, after),
        }

    sockets: list = []

    async def connect() -> None:
        urls = [stack.url(stack.token(f"hot-user-{i}")) for i in range(ASYNC_REQUESTS)]
        sockets.extend(await wire.open_connections(urls))

    async def sync(with_id: bool) -> None:
        for i in range(SYNC_REQUESTS):
            frame = {"action": "echo", "payload": {"n": i}} | ({"id": f"s-{i}"} if with_id else {})
            await sockets[0].send(json.dumps(frame))
            await sockets[0].recv()
            await asyncio.sleep(SYNC_PACE_S)

    async def run_async(tag: str, payload: dict) -> None:
        await asyncio.gather(
            *(wire.call_async(s, "work", f"{tag}-{i}", payload) for i, s in enumerate(sockets))
        )

    await measured("connection", ASYNC_REQUESTS, connect)
    if cap_off:
        await measured(CAP_OFF, ASYNC_REQUESTS, lambda: run_async("a0", {"ms": 0}))
        await wire.close_all(sockets)
        return {CAP_OFF: results[CAP_OFF]}
    await measured("sync, no id", SYNC_REQUESTS, lambda: sync(False))
    await measured("sync, with id", SYNC_REQUESTS, lambda: sync(True))
    await measured("async, no progress", ASYNC_REQUESTS, lambda: run_async("a0", {"ms": 0}))
    await measured(
        "async, 10 reports in 1 s",
        ASYNC_REQUESTS,
        lambda: run_async("a10", {"ms": 1000, "reports": 10}),
    )
    await wire.close_all(sockets)
    return results


def run(workdir: Path, quick: bool = False) -> dict:
    engine = processes.best_dynamodb()
    counts_file, ledger = workdir / "hot-counts.json", workdir / "hot-ledger.jsonl"
    counts_file.unlink(missing_ok=True)
    ledger.unlink(missing_ok=True)
    # The sweeper and the poller run on a schedule, not per request: kept out of the counts.
    flags = ("--dynamodb", engine, "--sweep-interval", "3600", "--poll-jobs-interval", "3600")
    env = {**os.environ, LEDGER: str(ledger)}
    with processes.local_stack(
        workdir / "stack-hot-keys", *flags, env=env, counts_file=counts_file
    ) as stack:
        measured = asyncio.run(_scenarios(stack, Counts(counts_file), ledger))
    # The same async request with the per-user cap off: the router sets no `active_owner`,
    # so the cap's index is never written (measured, not subtracted).
    counts_file.unlink(missing_ok=True)
    ledger.unlink(missing_ok=True)
    env_off = {**env, MAX_ACTIVE_REQUESTS: "0"}
    with processes.local_stack(
        workdir / "stack-hot-keys-cap-off", *flags, env=env_off, counts_file=counts_file
    ) as stack:
        measured |= asyncio.run(_scenarios(stack, Counts(counts_file), ledger, cap_off=True))
    shards = RuntimeTuning().due_shards
    scenarios, rows = {}, {}
    for name, data in measured.items():
        scenario_uses = uses(data["lines"], data["requests"])
        scenarios[name] = {
            "requests": data["requests"],
            "uses": [asdict(u) for u in scenario_uses],
            "seconds_per_request": _seconds_per_request(*data["counts"], data["requests"]),
            **per_request(data["lines"], data["requests"]),
        }
    # With the cap off, the due index takes every async request: its key before and after
    # sharding is that table's.
    for async_name in ("async, no progress", "async, 10 reports in 1 s", CAP_OFF):
        workloads = [
            (
                [Use(**u) for u in scenarios[name]["uses"]],
                rate,
                instances(scenarios[name]["seconds_per_request"], rate),
            )
            for name, rate in (
                (async_name, ASYNC_PER_S),
                ("sync, with id", SYNC_PER_S),
                ("connection", CONNECTION_PER_S),
            )
        ]
        rows[async_name] = [
            asdict(r) | {"met": r.met} for r in project(workloads, shards, before_shards=1)
        ]
    return {
        "dynamodb": engine,
        "units_measured": engine != "moto",
        "shards": shards,
        "target": {"async_per_s": ASYNC_PER_S, "sync_per_s": SYNC_PER_S},
        "scenarios": scenarios,
        "projection": rows,
    }


def _place(row: dict) -> str:
    return f"`{row['table']}`" + (f" index `{row['index']}`" if row["index"] else "")


def _verdict(row: dict) -> str:
    if not row["met"]:
        return "NO"
    if row["kind"] == ACTION and row["wcu_after"] >= ACCOUNT_CONCURRENCY:
        return "at the limit, by the concurrency quota (recommendation 4)"
    return "yes"


def markdown(section: dict | None) -> str:
    """Section 7 of docs/benchmarks.md."""
    if section is None:
        return "Not measured in this run."
    if "error" in section:
        return f"This section failed: `{section['error']}`."
    lines = [
        f"The hottest partition key value of each table and index at "
        f"{section['target']['async_per_s']:,} async requests and "
        f"{section['target']['sync_per_s']:,} sync messages (with an `id`) a second in one "
        f"region, projected from the capacity units each call of a local run spent "
        f"({section['dynamodb']}), before (the due index on one key value a region) and after "
        f"(on {section['shards']} shards, `runtime.dueShards`). Limit: "
        f"{MAX_WCU_PER_KEY:,} WCU/s and {MAX_RCU_PER_KEY:,} RCU/s per key value.",
        "",
    ]
    for name, rows in section["projection"].items():
        lines += [
            f"With `{name}` requests:",
            "",
            "| table / index | key is one per | WCU/s before | WCU/s after | RCU/s before "
            "| RCU/s after | within limits |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {_place(r)} | {r['kind']} | {r['wcu_before']:,.0f} | {r['wcu_after']:,.0f} "
            f"| {r['rcu_before']:,.0f} | {r['rcu_after']:,.0f} | {_verdict(r)} |"
            for r in rows
        ]
        lines.append("")
    lines += [
        "Writes and write units (WRU) per request, measured:",
        "",
        "| scenario | writes | by table | WRU | WRU by table and index |",
        "|---|---|---|---|---|",
    ]
    for name, s in section["scenarios"].items():
        by_table = ", ".join(f"{t} {n:.1f}" for t, n in s["writes_by_table"].items())
        by_place = ", ".join(f"{p} {n:.1f}" for p, n in s["wru_by_place"].items())
        lines.append(f"| {name} | {s['writes']:.1f} | {by_table} | {s['wru']:.1f} | {by_place} |")
    return "\n".join(lines)


def hottest(section: dict) -> tuple[float, float, float, float]:
    """(WCU/s before, after, RCU/s before, after) of the hottest key over every projection."""
    rows = [r for rows in section["projection"].values() for r in rows]
    return (
        max(r["wcu_before"] for r in rows),
        max(r["wcu_after"] for r in rows),
        max(r["rcu_before"] for r in rows),
        max(r["rcu_after"] for r in rows),
    )


#: Issue 15's budget for one async request (no progress): the put, the claim, the finish.
ASYNC_WRITES, ASYNC_WRU = 3, 6


def hot_keys_check(section: dict | None) -> tuple[str, bool] | None:
    """The hot-key target: the hottest key's WCU/s and RCU/s, before and after."""
    if not section or "projection" not in section:
        return None
    wcu_before, wcu_after, rcu_before, rcu_after = hottest(section)
    text = (
        f"hottest key {wcu_after:,.0f} WCU/s and {rcu_after:,.0f} RCU/s on "
        f"{section['shards']} due shards (one shard: {wcu_before:,.0f} WCU/s, "
        f"{rcu_before:,.0f} RCU/s)"
    )
    return text, wcu_after <= MAX_WCU_PER_KEY and rcu_after <= MAX_RCU_PER_KEY


def hot_keys_reason(section: dict) -> str:
    """Which keys are over the limit, and what they are."""
    over = {
        (r["table"], r["index"], r["kind"]): r
        for rows in section["projection"].values()
        for r in rows
        if not r["met"]
    }
    parts = [
        f"{_place(r)} (one key per {r['kind']}): {r['wcu_after']:,.0f} WCU/s, "
        f"{r['rcu_after']:,.0f} RCU/s"
        for r in over.values()
    ]
    text = "Over the limit: " + "; ".join(parts) + "."
    if any(kind == ACTION for _, _, kind in over):
        text += (
            " An action's circuit-breaker count item takes one write a second from each "
            "Lambda instance that ran the action (`streamer.breaker`), so it needs as many "
            "WCU/s as instances run at once; the model counts them from this machine's "
            "invocation times (far longer than Lambda's), up to the region's default "
            f"concurrency quota of {ACCOUNT_CONCURRENCY:,}. Past that quota "
            "`runtime.circuitCountShards` spreads them (recommendation 4)."
        )
    return text


#: The sweeper's schedule: `rate(1 minute)`, EventBridge's shortest.
SWEEP_INTERVAL_S = 60
#: Eventually consistent reads: 0.5 RRU per 4 KB a Scan reads, its items' sizes added up and
#: rounded up per page (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
#: read-write-operations.html), filter or not (Scan.html, "Filter expressions for scan").
SCAN_RRU_PER_4_KB = 0.5
#: A Scan page reads at most 1 MB (Scan.html).
SCAN_PAGE_BYTES = 1 << 20


def cap_index_entry() -> dict:
    """One entry of the cap's index as a scan reads it: the table's key, the index's, and
    what it projects, with the lengths of a real one (a UUID request id, a `tenant#user`
    owner, a millisecond time, a region's name)."""
    owner = "tenant-0001#user-000001"
    values = {
        schema.REQUESTS.hash_key: {"S": f"{owner}#0b6e0a52-3c0e-4b8e-9a55-1d2a4f0e7c11"},
        "active_owner": {"S": owner},
        "cap_due_at": {"N": "1796357269165"},
        "origin_region": {"S": "ap-southeast-2"},
    }
    index = schema.index_of(schema.REQUESTS, schema.REQUESTS_BY_ACTIVE_OWNER)
    named = {schema.REQUESTS.hash_key, index.hash_key, *index.included}
    if named != set(values):
        raise ValueError(f"the sample entry must name what the index holds: {sorted(named)}")
    return values


@dataclass(frozen=True)
class ScanCost:
    """What one region's sweeper spends scanning the cap's index, at a steady load."""

    #: Entries in the index: every region's requests not yet ended (the replica holds them all).
    entries: float
    entry_bytes: int
    bytes: float
    rru_per_scan: float
    rru_per_s: float
    pages: float
    usd_per_day: float
    #: What the due index's entry of each request (2 WRU: put in and taken out) would cost.
    saved_usd_per_day: float


def cap_index_scan(rate_per_s: float, active_s: float, regions: int = 1) -> ScanCost:
    """The scan's cost with `rate_per_s` async requests a second in each of `regions`,
    each in the index for `active_s` seconds (pickup and run), against the write it saves."""
    entry_bytes = item_size(cap_index_entry())
    entries = rate_per_s * regions * active_s
    size = entries * entry_bytes
    rru_per_scan = size / 4096 * SCAN_RRU_PER_4_KB
    rru_per_s = rru_per_scan / SWEEP_INTERVAL_S
    day = 86_400
    return ScanCost(
        entries=entries,
        entry_bytes=entry_bytes,
        bytes=size,
        rru_per_scan=rru_per_scan,
        rru_per_s=rru_per_s,
        pages=size / SCAN_PAGE_BYTES,
        usd_per_day=rru_per_s * day * prices.DYNAMODB_READ.usd,
        saved_usd_per_day=rate_per_s * 2 * day * prices.DYNAMODB_WRITE.usd,
    )


def _requests_cost(scenario: dict) -> tuple[float, float]:
    """(writes, WRU) of one request on the requests table, its indexes included."""
    writes = scenario["writes_by_table"].get("requests", 0.0)
    wru = sum(v for k, v in scenario["wru_by_place"].items() if k.split(".")[0] == "requests")
    return writes, wru


def async_cost_check(section: dict | None) -> tuple[str, bool] | None:
    """The async request budget on the requests table: writes and WRU (indexes included),
    judged on the default configuration (the per-user cap on)."""
    scenario = (section or {}).get("scenarios", {}).get("async, no progress")
    if not scenario:
        return None
    writes, wru = _requests_cost(scenario)
    text = f"requests table {writes:.1f} writes, {wru:.1f} WRU with its indexes"
    if off := section["scenarios"].get(CAP_OFF):
        off_writes, off_wru = _requests_cost(off)
        text += f" (per-user cap off: {off_writes:.1f} writes, {off_wru:.1f} WRU)"
    return text, writes <= ASYNC_WRITES and wru <= ASYNC_WRU


def async_cost_reason(section: dict) -> str:
    scenario = section["scenarios"]["async, no progress"]
    places = ", ".join(
        f"{k} {v:.1f}" for k, v in scenario["wru_by_place"].items() if k.startswith("requests")
    )
    return (
        f"WRU by table and index: {places}. Each write is 1 WRU on the table (the item is "
        "under 1 KB); each index adds a write where the item enters it, leaves it, "
        "changes its key (a delete and a put) or changes an attribute it projects "
        "(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/"
        "GSI.html#GSI.Writes). A request is in one index from its put to its finish: with "
        "the per-user cap on, the cap's (`by_active_owner`), which the sweeper scans for "
        "the stalled ones; with it off, the due index (`streamer.keys.watched_by`). The "
        "claim leaves it alone while the lease ends after the pickup time. Recommendation 5 "
        "puts figures on the scan."
    )


__all__ = [
    "ASYNC_WRITES",
    "ASYNC_WRU",
    "Row",
    "ScanCost",
    "Use",
    "async_cost_check",
    "async_cost_reason",
    "cap_index_entry",
    "cap_index_scan",
    "hot_keys_check",
    "hot_keys_reason",
    "hottest",
    "hottest_per_s",
    "hottest_shard_share",
    "instances",
    "kind_of",
    "markdown",
    "per_request",
    "project",
    "run",
    "uses",
]
