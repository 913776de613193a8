"""Mutation testing of the decision core with mutmut, one module at a time.

    python -m tests.mutation.run              # every module (`make mutation`)
    python -m tests.mutation.run --changed    # modules a change touched (`make test`)
    python -m tests.mutation.run transitions  # named modules

mutmut imports the code it mutates from `mutants/src`, and the runtime lives in
`lambdas/`, so each module runs in a scratch project under build/mutation/<module>:
`src/streamer` (a copy of lambdas/streamer), the module's pure unit tests, and a
pyproject.toml naming the one file to mutate. Only those fast tests run against
each mutant (no moto, no sockets). Prints the score of each module and every
survivor with its diff; exits 1 when a module kills under 90 % of its mutants (not
checked on a sample) or a survivor is not listed as equivalent in docs/testing.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRATCH = ROOT / "build" / "mutation"
EQUIVALENTS = ROOT / "docs" / "testing.md"
MUTMUT = Path(sys.executable).with_name("mutmut")
#: The score each module must reach.
MIN_SCORE = 0.90
#: Without a base to diff against, `--changed` runs every module on one mutant in this many.
SAMPLE_EVERY = 5

KILLED = {1, 3, 24, -24, 36, 152, 255, 37, -9, -11}
SURVIVED = {0}
NO_TESTS = {5, 33}


@dataclass(frozen=True)
class Module:
    """One decision module: its file under lambdas/streamer, the functions that are
    decisions (None: all of them) and the pure tests that pin them."""

    source: str
    tests: tuple[str, ...]
    functions: tuple[str, ...] | None = None

    @property
    def dotted(self) -> str:
        return "streamer." + self.source.removesuffix(".py").replace("/", ".")


MODULES: dict[str, Module] = {
    "transitions": Module(
        "transitions.py",
        ("tests/unit/test_transitions.py", "tests/unit/test_decision_boundaries.py"),
    ),
    "conditions": Module(
        "store/conditions.py",
        ("tests/unit/test_claim_condition.py",),
    ),
    "application": Module(
        "application.py",
        ("tests/unit/test_sync_async.py", "tests/unit/test_decision_boundaries.py"),
        functions=(
            "runs_async",
            "sync_outcome",
            "replay_response",
            "ApplicationActions._at_active_cap",
        ),
    ),
    "coalescer": Module(
        "coalescer.py",
        ("tests/unit/test_coalescer.py",),
    ),
    "ratelimit": Module(
        "ratelimit.py",
        (
            "tests/unit/test_token_bucket.py",
            "tests/unit/test_rate_limit.py",
            "tests/unit/test_rate_limit_model.py",
        ),
        functions=("TokenBucket", "decide", "charged", "reconcile", "reported"),
    ),
    "protocol": Module(
        "protocol.py",
        (
            "tests/unit/test_protocol.py",
            "tests/unit/test_protocol_frames.py",
            "tests/unit/test_decision_boundaries.py",
        ),
    ),
    "auth": Module(
        "auth.py",
        ("tests/unit/test_token_claims.py",),
        functions=("TokenVerifier", "identity_of_claims", "algorithms_for", "tenant_allowed"),
    ),
    "regions": Module(
        "regions.py",
        ("tests/unit/test_regions.py",),
    ),
    "config": Module(
        "config.py",
        (
            "tests/unit/test_config.py",
            "tests/unit/test_config_env.py",
            "tests/unit/test_decision_boundaries.py",
        ),
    ),
}


def patterns(module: Module, *, sample: bool) -> list[str]:
    """mutmut's names (globs) of the mutants of the module's decisions; with `sample`,
    only those numbered a multiple of SAMPLE_EVERY (5: numbers ending in 0 or 5)."""
    if module.functions is None:
        names = [f"{module.dotted}.*__mutmut_*"]
    else:
        names = []
        for function in module.functions:
            cls, _, method = function.partition(".")
            if method:
                names.append(f"{module.dotted}.xǁ{cls}ǁ{method}__mutmut_*")
            elif function[:1].isupper():
                names.append(f"{module.dotted}.xǁ{function}ǁ*__mutmut_*")
            else:
                names.append(f"{module.dotted}.x_{function}__mutmut_*")
    if sample:
        assert SAMPLE_EVERY == 5
        names = [name + digit for name in names for digit in "05"]
    return names


def prepare(name: str, module: Module) -> Path:
    """A scratch project holding the runtime as `src/` and the module's tests."""
    work = SCRATCH / name
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(
        ROOT / "lambdas" / "streamer",
        work / "src" / "streamer",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (work / "tests" / "unit").mkdir(parents=True)
    (work / "tests" / "__init__.py").touch()
    (work / "tests" / "unit" / "__init__.py").touch()
    for test in module.tests:
        shutil.copy2(ROOT / test, work / test)
    tests = ", ".join(f'"{t}"' for t in module.tests)
    (work / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\n"
        'addopts = "-p no:cacheprovider"\n'
        "[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f'only_mutate = ["src/streamer/{module.source}"]\n'
        f"pytest_add_cli_args_test_selection = [{tests}]\n"
        "use_git_change_detection = false\n"
    )
    return work


def mutate(name: str, module: Module, *, sample: bool) -> dict[str, int | None]:
    """Run mutmut on one module; the exit code of each mutant its decisions hold."""
    work = prepare(name, module)
    names = patterns(module, sample=sample)
    run = subprocess.run(
        [str(MUTMUT), "run", "--max-children", "2", *names],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    meta = work / "mutants" / "src" / "streamer" / (module.source + ".meta")
    if not meta.exists():
        sys.stdout.write(run.stdout[-3000:] + run.stderr[-3000:])
        raise SystemExit(f"mutmut produced no results for {name}")
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return {k: v for k, v in codes.items() if any(fnmatchcase(k, n) for n in names)}


def diff(name: str, mutant: str) -> str:
    """The changed lines of one mutant, as mutmut shows them."""
    shown = subprocess.run(
        [str(MUTMUT), "show", mutant],
        cwd=SCRATCH / name,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    lines = [
        line
        for line in shown.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    return " | ".join(line.strip() for line in lines)


def changed_modules() -> tuple[list[str], bool]:
    """Modules whose source or tests differ from origin/main's merge-base; with no
    such base (no remote), every module on a deterministic sample of its mutants."""
    try:
        base = subprocess.run(
            ["git", "merge-base", "origin/main", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:  # no git at all (an unpacked archive)
        return list(MODULES), True
    if base.returncode != 0:
        return list(MODULES), True
    changed = subprocess.run(
        ["git", "diff", "--name-only", base.stdout.strip()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    touched = [
        name
        for name, module in MODULES.items()
        if f"lambdas/streamer/{module.source}" in changed
        or any(test in changed for test in module.tests)
        or "tests/mutation/run.py" in changed
    ]
    return touched, False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="module", help=", ".join(MODULES))
    parser.add_argument("--changed", action="store_true", help="only modules a change touched")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown modules {unknown}; choose from {', '.join(MODULES)}")
    sample = False
    names = args.modules or list(MODULES)
    if args.changed:
        names, sample = changed_modules()
        if not names:
            # Main itself, or a change that leaves the decisions alone: a sample of every
            # module still shows a decision's tests were not weakened elsewhere.
            print("mutation: no decision module changed since origin/main; sampling all")
            names, sample = list(MODULES), True
        elif sample:
            print(f"mutation: no origin/main to diff against; one mutant in {SAMPLE_EVERY}")
    listed = EQUIVALENTS.read_text() if EQUIVALENTS.exists() else ""
    failed = False
    rows = []
    survivors: list[tuple[str, str, str, bool]] = []
    for name in names:
        codes = mutate(name, MODULES[name], sample=sample)
        killed = sum(1 for c in codes.values() if c in KILLED)
        judged = [k for k, c in codes.items() if c in KILLED | SURVIVED | NO_TESTS]
        score = killed / len(judged) if judged else 1.0
        rows.append((name, len(judged), killed, score))
        # A sample is too small to score (one equivalent in five mutants is 80 %):
        # it fails only on a survivor not listed as equivalent.
        failed |= score < MIN_SCORE and not sample
        for key, code in sorted(codes.items()):
            if code in SURVIVED | NO_TESTS:
                known = f"`{key}`" in listed
                failed |= not known
                kind = "survived" if code in SURVIVED else "no tests"
                survivors.append((key, kind, diff(name, key), known))
    print(f"\n{'module':<14}{'mutants':>8}{'killed':>8}{'score':>8}")
    for name, total, killed, score in rows:
        flag = "" if score >= MIN_SCORE or sample else f"  < {MIN_SCORE:.0%}"
        print(f"{name:<14}{total:>8}{killed:>8}{score:>8.1%}{flag}")
    if survivors:
        print("\nsurvivors (equivalent if listed in docs/testing.md):")
    for key, kind, change, known in survivors:
        mark = "listed" if known else "NOT LISTED"
        print(f"  {key} [{kind}, {mark}]\n      {change}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
