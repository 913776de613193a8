"""One place of decision per request across regions, and the fenced takeover (pure).

`streamer.regions` decides where a request's conditional writes go and when
another region may take it over. The property tests play the decider's table
against every interleaving hypothesis finds of two regions' claims,
takeovers, lease renewals and finishes, and check that no request finishes
twice; one example shows the race the rule exists for: two regions deciding
at their own replicas, reconciled by last writer wins, both finish.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from streamer.regions import (
    Fence,
    Placement,
    Refusal,
    Takeover,
    TakeoverSettings,
    UnknownRegion,
    acts_on,
    admits,
    heartbeat_stale,
    home_region,
    latest_placement,
    must_rejoin,
    placement_of,
    recovery_bound_s,
    route_write,
    takeover,
    write_fence,
)

US, EU, AP = "us-east-1", "eu-west-1", "ap-northeast-1"
ENDPOINTS = {
    US: "https://dynamodb.us-east-1.amazonaws.com",
    EU: "https://dynamodb.eu-west-1.amazonaws.com",
}
SETTINGS = TakeoverSettings(
    lease_s=930, sweep_interval_s=60, grace_s=30, heartbeat_stale_s=180, replication_lag_s=2
)

owners = st.text(min_size=1, max_size=40).map(lambda text: f"tenant#{text}")


# --- where a request is decided ------------------------------------------------------


@given(owners)
def test_the_home_of_an_owner_does_not_depend_on_the_order_regions_are_listed(owner: str) -> None:
    # Every region computes the home of a client id on its own: if the answer
    # depended on the configured order, two regions could create the same id.
    assert home_region(owner, [US, EU, AP]) == home_region(owner, [AP, US, EU])


@given(owners)
def test_adding_a_region_moves_owners_only_to_the_added_region(owner: str) -> None:
    before = home_region(owner, [US, EU])
    after = home_region(owner, [US, EU, AP])
    assert after in (before, AP)


def test_owners_are_spread_over_the_regions() -> None:
    homes = {home_region(f"tenant#user-{n}", [US, EU]) for n in range(50)}
    assert homes == {US, EU}


def test_no_configured_region_is_an_error() -> None:
    with pytest.raises(UnknownRegion, match=r"^no regions configured$"):
        home_region("tenant#user", [])


def test_each_owner_without_a_stored_placement_is_placed_at_its_own_home() -> None:
    # Two owners with different homes: the placement follows each owner.
    owners_by_home = {home_region(f"acme#user-{n}", [US, EU]): f"acme#user-{n}" for n in range(20)}
    assert set(owners_by_home) == {US, EU}
    for home, owner in owners_by_home.items():
        assert placement_of(owner, [US, EU]).decider == home


def test_an_ordinary_write_keeps_the_epoch_it_read() -> None:
    assert write_fence(Placement(decider=US, runner=EU, epoch=3)) == Fence(expected=3, epoch=3)


def test_no_placement_read_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^no placement read$"):
        latest_placement([])


def test_a_new_request_is_decided_and_run_in_its_owners_home() -> None:
    # Also an item written before placement existed, or not yet replicated here.
    home = home_region("acme#alice", [US, EU])
    assert placement_of("acme#alice", [US, EU]) == Placement(decider=home, runner=home, epoch=0)


def test_the_placement_an_item_carries_wins_over_the_owners_home() -> None:
    home = home_region("acme#alice", [US, EU])
    other = EU if home == US else US
    stored = placement_of("acme#alice", [US, EU], decider=other, runner=other, epoch=3)
    assert stored == Placement(other, other, 3)


def test_a_write_goes_to_the_deciders_endpoint_from_any_region() -> None:
    placement = Placement(decider=US, runner=US)
    from_home = route_write(placement, US, ENDPOINTS)
    from_eu = route_write(placement, EU, ENDPOINTS)
    assert (from_home.endpoint, from_home.remote) == (ENDPOINTS[US], False)
    assert (from_eu.region, from_eu.endpoint, from_eu.remote) == (US, ENDPOINTS[US], True)


def test_a_decider_without_an_endpoint_is_an_error() -> None:
    with pytest.raises(UnknownRegion, match=AP):
        route_write(Placement(decider=AP, runner=AP), US, ENDPOINTS)


def test_only_the_runner_region_acts_on_a_request() -> None:
    placement = Placement(decider=US, runner=EU, epoch=1)
    assert acts_on(placement, EU)
    assert not acts_on(placement, US)


# --- takeover ------------------------------------------------------------------------

STALLED = Placement(decider=US, runner=US, epoch=2)
NOW = 10_000.0
DUE_LONG_AGO = NOW - SETTINGS.grace_s - 1
STOPPED_LONG_AGO = {US: NOW - SETTINGS.heartbeat_stale_s}


def take(**changes: object) -> Takeover | Refusal:
    arguments: dict[str, object] = {
        "ended": False,
        "due_at": DUE_LONG_AGO,
        "taker": EU,
        "now": NOW,
        "heartbeats": STOPPED_LONG_AGO,
        "decider_reachable": True,
        "settings": SETTINGS,
    }
    arguments.update(changes)
    placement = arguments.pop("placement", STALLED)
    return takeover(placement, **arguments)  # type: ignore[arg-type]


def test_a_stalled_request_of_a_stopped_region_is_taken_over_at_its_decider() -> None:
    # The home region's functions are gone but its table answers: the takeover
    # is decided there, so every condition is still evaluated in one place.
    decision = take()
    assert decision == Takeover(
        write_region=US,
        fence=Fence(expected=2, epoch=3),
        due_at_most=NOW - SETTINGS.grace_s,
        placement=Placement(decider=US, runner=EU, epoch=3),
    )


def test_a_request_within_its_lease_and_grace_is_not_taken_over() -> None:
    assert take(due_at=NOW - SETTINGS.grace_s + 1) is Refusal.NOT_DUE


def test_a_request_due_exactly_a_grace_ago_is_taken_over() -> None:
    assert isinstance(take(due_at=NOW - SETTINGS.grace_s), Takeover)


def test_a_request_of_a_region_still_heartbeating_is_not_taken_over() -> None:
    # A long lease expiry alone is not enough: the region may only be slow.
    fresh = {US: NOW - SETTINGS.sweep_interval_s}
    assert take(heartbeats=fresh) is Refusal.REGION_ALIVE


def test_a_region_never_seen_counts_as_stopped() -> None:
    assert isinstance(take(heartbeats={}), Takeover)


def test_an_ended_request_is_never_taken_over() -> None:
    assert take(ended=True) is Refusal.ENDED


def test_a_region_does_not_take_over_what_already_runs_there() -> None:
    assert take(placement=Placement(decider=US, runner=EU, epoch=3)) is Refusal.ALREADY_RUNS_HERE


def test_without_failover_a_request_whose_decider_is_unreachable_waits() -> None:
    assert take(decider_reachable=False) is Refusal.DECIDER_UNREACHABLE


def test_failover_moves_the_decision_to_the_takers_table() -> None:
    decision = take(decider_reachable=False, settings=replace(SETTINGS, failover=True))
    assert isinstance(decision, Takeover)
    assert decision.write_region == EU
    assert decision.placement == Placement(decider=EU, runner=EU, epoch=3)


def test_failover_also_needs_the_deciders_heartbeat_stale() -> None:
    # The request already runs in EU, decided in US; US's table stops answering
    # while US still heartbeats (through its replica): EU may not take the decision.
    placement = Placement(decider=US, runner=EU, epoch=3)
    decision = take(
        placement=placement,
        decider_reachable=False,
        heartbeats={US: NOW},
        settings=replace(SETTINGS, failover=True),
    )
    assert decision is Refusal.REGION_ALIVE


def test_a_region_back_from_a_long_absence_must_rejoin() -> None:
    assert must_rejoin(NOW - SETTINGS.heartbeat_stale_s, NOW, SETTINGS)
    assert not must_rejoin(NOW - SETTINGS.sweep_interval_s, NOW, SETTINGS)


def test_a_rejoining_region_adopts_the_latest_takeover_it_reads() -> None:
    # Its own replica still says it runs the request; the taker's says otherwise.
    own = Placement(decider=US, runner=US, epoch=2)
    takers = Placement(decider=EU, runner=EU, epoch=3)
    assert latest_placement([own, takers]) == takers
    assert not acts_on(latest_placement([own, takers]), US)


@pytest.mark.parametrize(
    "negative", ["lease_s", "sweep_interval_s", "grace_s", "replication_lag_s"]
)
def test_a_negative_takeover_time_is_refused(negative: str) -> None:
    times = {"lease_s": 0, "sweep_interval_s": 0, "grace_s": 0, "replication_lag_s": 0}
    with pytest.raises(ValueError, match=r"^takeover times must not be negative$"):
        TakeoverSettings(heartbeat_stale_s=1, **{**times, negative: -0.5})


def test_zero_takeover_times_are_allowed() -> None:
    zero = TakeoverSettings(
        lease_s=0, sweep_interval_s=0, grace_s=0, heartbeat_stale_s=0.5, replication_lag_s=0
    )
    assert recovery_bound_s(zero) == 0.5


def test_a_heartbeat_staleness_within_one_sweep_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^heartbeat_stale_s must exceed sweep_interval_s$"):
        TakeoverSettings(lease_s=930, sweep_interval_s=60, grace_s=30, heartbeat_stale_s=60)


def test_heartbeat_staleness() -> None:
    assert heartbeat_stale(None, NOW, SETTINGS)
    assert not heartbeat_stale(NOW - 1, NOW, SETTINGS)


def test_the_recovery_bound_is_lease_plus_grace_plus_lag_plus_one_sweep() -> None:
    # max(930 + 30, 180) + 2 + 60
    assert recovery_bound_s(SETTINGS) == 1022
    short_leases = replace(SETTINGS, lease_s=10, grace_s=5)
    # The heartbeat's staleness bounds it when leases are short: max(15, 180) + 2 + 60.
    assert recovery_bound_s(short_leases) == 242


# --- fencing: every interleaving of two regions, one decider ----------------------------


@dataclass
class Item:
    """The request item as the decider's table holds it."""

    placement: Placement
    status: str = "PENDING"
    due_at: float = 0.0


@dataclass
class Run:
    region: str
    fence: Fence
    finished: bool = False


@dataclass
class World:
    """The decider's table, two regions' views of it, their heartbeats and runs."""

    item: Item
    now: float = 0.0
    views: dict[str, Item] = field(default_factory=dict)
    heartbeats: dict[str, float] = field(default_factory=dict)
    alive: set[str] = field(default_factory=lambda: {US, EU})
    runs: list[Run] = field(default_factory=list)
    #: Writes that succeeded for a run after a later run had claimed the request.
    fenced_off_writes: list[Run] = field(default_factory=list)

    def write(self, fence: Fence, allowed_statuses: tuple[str, ...]) -> bool:
        """A conditional write at the decider: the fence and the status, atomically."""
        return admits(self.item.placement.epoch, fence) and self.item.status in allowed_statuses


def step(world: World, action: str, region: str, fresh: bool = False) -> None:
    """One action of `region` on the request; reads may be old (views), writes are conditional.

    With `fresh` the region reads the item first; otherwise it acts on what it
    read last, however old. `renew` and `finish` are the region's latest run's
    worker, which keeps going after its region stopped.
    """
    if fresh:
        world.views[region] = replace(world.item)
    view = world.views.get(region)
    own_runs = [run for run in world.runs if run.region == region]
    if action == "stop":
        world.alive.discard(region)
    elif action == "heartbeat" and region in world.alive:
        world.heartbeats[region] = world.now
    elif action == "claim" and region in world.alive and view is not None:
        fence = write_fence(view.placement)
        if acts_on(view.placement, region) and world.write(fence, ("PENDING",)):
            world.item.status = "PROCESSING"
            world.item.due_at = world.now + SETTINGS.lease_s
            world.runs.append(Run(region, fence))
    elif action == "takeover" and region in world.alive and view is not None:
        decision = takeover(
            view.placement,
            ended=view.status == "DONE",
            due_at=view.due_at,
            taker=region,
            now=world.now,
            heartbeats=world.heartbeats,
            decider_reachable=True,
            settings=SETTINGS,
        )
        if (
            isinstance(decision, Takeover)
            and world.write(decision.fence, ("PENDING", "PROCESSING"))
            and world.item.due_at <= decision.due_at_most
        ):
            world.item.placement = decision.placement
            world.item.status = "PENDING"
    elif action in ("renew", "finish") and own_runs:
        run = own_runs[-1]
        if world.write(run.fence, ("PROCESSING",)):
            if run is not world.runs[-1]:
                world.fenced_off_writes.append(run)
            if action == "renew":
                world.item.due_at = world.now + SETTINGS.lease_s
            else:
                world.item.status = "DONE"
                run.finished = True


#: What each region's processor, sweeper and worker try, in this order.
SCRIPT = ("heartbeat", "takeover", "claim", "renew", "heartbeat", "finish") * 2


@st.composite
def interleavings(draw: st.DrawFn) -> list[tuple[str, str, bool]]:
    """Both regions' scripts and the clock's ticks, merged in any order.

    Each action reads fresh or acts on an old read; each region may stop at
    any point of its script (its worker's renewals and finish go on).
    """
    sources: dict[str, list[tuple[str, str, bool]]] = {}
    for region in (US, EU):
        script = [(action, region, draw(st.booleans())) for action in SCRIPT]
        stop_at = draw(st.integers(min_value=0, max_value=len(script)))
        script.insert(stop_at, ("stop", region, False))
        sources[region] = script
    ticks = draw(st.lists(st.sampled_from([60, 240, 480, 960]), min_size=1, max_size=6))
    sources["clock"] = [("tick", str(seconds), False) for seconds in ticks]
    labels = [name for name, items in sources.items() for _ in items]
    order = draw(st.permutations(labels))
    return [sources[name].pop(0) for name in order]


def play(steps: list[tuple[str, str, bool]]) -> World:
    world = World(item=Item(placement=placement_of("acme#alice", [US, EU])))
    for action, region, fresh in steps:
        if action == "tick":
            world.now += int(region)
        else:
            step(world, action, region, fresh)
    return world


@hypothesis_settings(max_examples=1000, deadline=None)
@given(interleavings())
def test_no_interleaving_of_two_regions_lets_two_runs_finish(steps: list) -> None:
    world = play(steps)
    finished = [run for run in world.runs if run.finished]
    assert len(finished) <= 1
    # Once a region took the request over, the earlier run can neither renew
    # its lease nor finish: only the latest claim's run ever writes.
    assert world.fenced_off_writes == []
    assert all(run is world.runs[-1] for run in finished)


def test_a_stopped_regions_request_is_finished_by_the_taker() -> None:
    # GIVEN a request claimed in its home region, which then stops
    home = home_region("acme#alice", [US, EU])
    taker = EU if home == US else US
    world = World(item=Item(placement=placement_of("acme#alice", [US, EU])))
    for action in ("heartbeat", "claim", "stop"):
        step(world, action, home, fresh=True)
    # WHEN the lease, the grace and the heartbeat's staleness have passed
    world.now += recovery_bound_s(SETTINGS)
    for action in ("takeover", "claim"):
        step(world, action, taker, fresh=True)
    # THEN the stopped region's worker, still running, can neither renew nor
    # finish, and the taker's run finishes
    step(world, "renew", home)
    step(world, "finish", home)
    step(world, "finish", taker)
    assert [(run.region, run.finished) for run in world.runs] == [(home, False), (taker, True)]
    assert world.fenced_off_writes == []


def test_deciding_at_each_regions_own_replica_lets_both_runs_finish() -> None:
    # The race of issue 16, without the rule: each region checks its condition
    # against its own replica (both see PENDING), then last writer wins merges
    # the replicas. Both claims succeed and both runs finish.
    replicas = {US: Item(Placement(US, US)), EU: Item(Placement(US, US))}
    runs = []
    for region in (US, EU):
        replica = replicas[region]
        fence = write_fence(replica.placement)
        if admits(replica.placement.epoch, fence) and replica.status == "PENDING":
            replica.status = "PROCESSING"
            runs.append(Run(region, fence))
    for run in runs:
        replica = replicas[run.region]
        if admits(replica.placement.epoch, run.fence) and replica.status == "PROCESSING":
            replica.status = "DONE"
            run.finished = True
    assert [run.finished for run in runs] == [True, True]


def test_failover_runs_again_a_request_whose_finish_had_not_replicated() -> None:
    # Why failover is off by default. US finishes the run in its replica (DONE)
    # and stops before that write replicates; EU's replica still shows the
    # request PROCESSING with the lease US last replicated, so EU fails it
    # over, and will run it a second time.
    home = Placement(decider=US, runner=US, epoch=0)
    eu_replica = Item(placement=home, status="PROCESSING", due_at=0.0)
    decision = takeover(
        eu_replica.placement,
        ended=eu_replica.status == "DONE",
        due_at=eu_replica.due_at,
        taker=EU,
        now=recovery_bound_s(SETTINGS),
        heartbeats={US: 0.0},
        decider_reachable=False,
        settings=replace(SETTINGS, failover=True),
    )
    assert isinstance(decision, Takeover)
    assert decision.placement == Placement(decider=EU, runner=EU, epoch=1)
