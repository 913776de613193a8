"""The mutation runner's plan (pure: nothing is run): every module and test it names exists."""

from __future__ import annotations

from fnmatch import fnmatchcase

from tests.mutation.run import MODULES, ROOT, patterns


def test_every_decision_module_and_its_tests_exist() -> None:
    for module in MODULES.values():
        assert (ROOT / "lambdas" / "streamer" / module.source).is_file(), module.source
        for test in module.tests:
            assert (ROOT / test).is_file(), test


def test_a_sample_keeps_one_mutant_in_five_of_the_named_decisions() -> None:
    names = patterns(MODULES["application"], sample=True)
    kept = [
        n
        for i in range(1, 41)
        for n in (f"streamer.application.x_runs_async__mutmut_{i}",)
        if any(fnmatchcase(n, p) for p in names)
    ]
    assert kept == [f"streamer.application.x_runs_async__mutmut_{i}" for i in range(5, 41, 5)]
    assert not any(fnmatchcase("streamer.application.x__queue__mutmut_5", p) for p in names)


def test_a_class_s_methods_are_named_with_mutmut_s_separator() -> None:
    names = patterns(MODULES["ratelimit"], sample=False)

    def scored(mutant: str) -> bool:
        return any(fnmatchcase(mutant, name) for name in names)

    assert scored("streamer.ratelimit.xǁTokenBucketǁadmits__mutmut_3")
    assert scored("streamer.ratelimit.x_decide__mutmut_3")
    assert not scored("streamer.ratelimit.xǁConnectionRateLimiterǁadmit__mutmut_3")
