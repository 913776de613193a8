"""Which region decides a request, where its writes go, and when another region takes over.

Streamer's tables are global tables in multi-Region eventual consistency
(MREC). Two documented facts shape everything here ("How DynamoDB global
tables work", Amazon DynamoDB developer guide,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/V2globaltables_HowItWorks.html):

- a conditional write evaluates its condition against the item's version in
  the Region where it is written, not against the other replicas;
- concurrent writes to one item in two Regions are resolved per item by last
  writer wins (the modification with the latest internal timestamp).

So two regions that each decide at their own replica can both see "PENDING"
and both claim, or a cancel can be overwritten by a later finish. The rule
this module states: **every conditional state change of a request is decided
at one table endpoint, its decider's** (docs/guarantees.md, "Multi-region",
says why this and not multi-Region strong consistency).

A request's `Placement` is stored on its item: the `decider` (the region whose
table endpoint evaluates its conditions), the `runner` (the region whose
processor and sweeper act on it) and the `epoch` (bumped by every takeover).
A new request is placed in its owner's home region, a function of the owner
key alone, so a client id sent to two regions is decided in one place.

Takeover: when the runner region stops (its heartbeat goes stale) and a
request's due time has passed by a grace, another region may take it over.
Each takeover is one conditional write that bumps the epoch; every later
write of the old runner carries the old epoch and is refused. Pure: no I/O,
no clock; the caller passes `now` and what it read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum


class UnknownRegion(ValueError):
    """A region that is not one of the configured regions, or has no endpoint."""


@dataclass(frozen=True)
class Placement:
    """Where a request is decided and run, and the epoch of that arrangement."""

    #: The region whose table endpoint evaluates every condition of the request.
    decider: str
    #: The region whose processor claims and runs it, and whose sweeper re-drives it.
    runner: str
    #: Bumped by each takeover; a write carrying an older epoch is refused.
    epoch: int = 0


def _weight(region: str, owner: str) -> bytes:
    return hashlib.sha256(f"{region}\x00{owner}".encode()).digest()


def home_region(owner: str, regions: Sequence[str]) -> str:
    """The region that decides the requests of `owner` (`tenant#user`), from the owner alone.

    Rendezvous hashing: the region with the highest hash of (region, owner).
    It depends on the set of regions, not their order, and adding a region
    moves only the owners whose new home is the added region (their requests
    already created too, where the decider is computed and not stored: the
    region set changes only with nothing running, docs/deploying.md).
    """
    if not regions:
        raise UnknownRegion("no regions configured")
    return max(regions, key=lambda region: _weight(region, owner))


def placement_of(
    owner: str,
    regions: Sequence[str],
    *,
    decider: str | None = None,
    runner: str | None = None,
    epoch: int | None = None,
) -> Placement:
    """The placement an item carries; without one, its owner's home (decided and run there).

    A request not created yet, or an item from before placement, has none. A
    region's replica may not have received the item yet: then the owner's home
    is where it was (or will be) created, which is the same answer as long as
    the configured regions are the same.
    """
    home = home_region(owner, regions)
    decided_by = decider or home
    return Placement(decider=decided_by, runner=runner or decided_by, epoch=epoch or 0)


@dataclass(frozen=True)
class WriteRoute:
    """Where one conditional write of a request goes."""

    region: str
    endpoint: str
    #: True when the write crosses regions and pays one inter-region round trip.
    remote: bool


def route_write(
    placement: Placement, writer_region: str, endpoints: Mapping[str, str]
) -> WriteRoute:
    """The table endpoint a write from `writer_region` goes to: always the decider's."""
    if placement.decider not in endpoints:
        raise UnknownRegion(f"no table endpoint for region {placement.decider!r}")
    return WriteRoute(
        region=placement.decider,
        endpoint=endpoints[placement.decider],
        remote=placement.decider != writer_region,
    )


def acts_on(placement: Placement, region: str) -> bool:
    """Whether `region`'s processor and sweeper act on the request (claim, re-drive, finish)."""
    return placement.runner == region


@dataclass(frozen=True)
class Fence:
    """The fencing data of one conditional write: the condition, and what the write stores.

    The store writes `epoch = expected` into the condition (for `expected` 0
    also "no epoch attribute yet", items from before placement) and sets the
    item's epoch to `epoch`.
    """

    expected: int
    epoch: int


def write_fence(placement: Placement) -> Fence:
    """The fence of an ordinary state change: it holds only if no takeover happened since."""
    return Fence(expected=placement.epoch, epoch=placement.epoch)


def admits(stored_epoch: int, fence: Fence) -> bool:
    """Whether the decider's table accepts a write with `fence` on an item at `stored_epoch`."""
    return stored_epoch == fence.expected


@dataclass(frozen=True)
class TakeoverSettings:
    """The times that bound a takeover; docs/guarantees.md derives the recovery time from them."""

    #: The longest a request can be due after its last write: the lease a claim or
    #: progress persist sets (processor timeout plus lease margin), or the pickup
    #: timeout of a PENDING request if that is longer.
    lease_s: float
    #: How often each region's sweeper runs, and writes its heartbeat.
    sweep_interval_s: float
    #: How long past a request's due time another region waits before taking it over.
    grace_s: float
    #: How old a region's last heartbeat must be before another region may take its requests.
    heartbeat_stale_s: float
    #: The replication lag other regions are assumed to see at most (a planning figure:
    #: global tables give no bound, "ReplicationLatency" is measured, not promised).
    replication_lag_s: float = 0.0
    #: Whether a region may move the decision of a request to its own table when the
    #: decider's table does not answer. Off: such a request waits for its decider to
    #: return, and no partition can run it twice. On: it survives its decider's outage,
    #: but two regions cut off from each other, both alive, may both run it (two
    #: regions have no third to break the tie).
    failover: bool = False

    def __post_init__(self) -> None:
        if self.heartbeat_stale_s <= self.sweep_interval_s:
            # A live region heartbeats once per sweep: a shorter staleness would
            # call it stopped between two of its own sweeps.
            raise ValueError("heartbeat_stale_s must exceed sweep_interval_s")
        if min(self.lease_s, self.sweep_interval_s, self.grace_s, self.replication_lag_s) < 0:
            raise ValueError("takeover times must not be negative")


def heartbeat_stale(
    last_heartbeat_at: float | None, now: float, settings: TakeoverSettings
) -> bool:
    """Whether a region's last heartbeat (None: never seen) is old enough to call it stopped."""
    return last_heartbeat_at is None or now - last_heartbeat_at >= settings.heartbeat_stale_s


class Refusal(Enum):
    """Why a region may not take a request over."""

    ENDED = "the request has ended"
    ALREADY_RUNS_HERE = "the request already runs in this region"
    NOT_DUE = "its due time plus the grace has not passed"
    REGION_ALIVE = "a region it would take a role from has a fresh heartbeat"
    DECIDER_UNREACHABLE = "its decider's table does not answer and failover is off"


@dataclass(frozen=True)
class Takeover:
    """One takeover write: where it goes, what it requires, what it stores.

    The store adds the lifecycle's own condition (the request has not ended)
    to the epoch and due-time checks here.
    """

    #: The region whose table endpoint evaluates the takeover's condition.
    write_region: str
    #: The condition's epoch, and the new epoch stored.
    fence: Fence
    #: The condition's due check: the item's due time is at most this.
    due_at_most: float
    #: The placement the item has after the takeover.
    placement: Placement


def takeover(
    placement: Placement,
    *,
    ended: bool,
    due_at: float,
    taker: str,
    now: float,
    heartbeats: Mapping[str, float],
    decider_reachable: bool,
    settings: TakeoverSettings,
) -> Takeover | Refusal:
    """Whether `taker` may take over a stalled request, and the write that does it.

    `due_at` is the sweeper's due time of the request (lease expiry, retry
    time or pickup deadline) and `heartbeats` each region's last heartbeat
    (a region missing: never seen), as the taker read them. The takeover is
    allowed when the request has not ended, its due time passed by `grace_s`,
    and every region that loses a role to the taker has a stale heartbeat.

    If the decider's table still answers (the runner region's functions are
    gone, its DynamoDB is not), the takeover is decided there and only the
    runner moves: every condition stays at one endpoint. If it does not answer,
    the request waits, unless `settings.failover` lets the decision move to the
    taker's own table; a region that loses its role that way must rejoin
    (`must_rejoin`) before it acts again.
    """
    if ended:
        return Refusal.ENDED
    if not decider_reachable and not settings.failover:
        return Refusal.DECIDER_UNREACHABLE
    decider = placement.decider if decider_reachable else taker
    losing = {placement.runner} - {taker}
    if decider != placement.decider:
        losing.add(placement.decider)
    if not losing:
        return Refusal.ALREADY_RUNS_HERE
    due_at_most = now - settings.grace_s
    if due_at > due_at_most:
        return Refusal.NOT_DUE
    if not all(heartbeat_stale(heartbeats.get(region), now, settings) for region in losing):
        return Refusal.REGION_ALIVE
    fence = Fence(expected=placement.epoch, epoch=placement.epoch + 1)
    return Takeover(
        write_region=decider,
        fence=fence,
        due_at_most=due_at_most,
        placement=Placement(decider=decider, runner=taker, epoch=fence.epoch),
    )


def must_rejoin(own_heartbeat_at: float | None, now: float, settings: TakeoverSettings) -> bool:
    """Whether a region's own heartbeat went stale: it was away long enough to be taken over.

    Such a region may hold a replica that has not yet received another
    region's failover of its requests. Before its processor or sweeper acts
    on a request again, it re-reads the request at every other region's
    endpoint (a consistent read there) and adopts the highest epoch found.
    """
    return heartbeat_stale(own_heartbeat_at, now, settings)


def latest_placement(placements: Sequence[Placement]) -> Placement:
    """Of the placements one request has in several replicas, the one of the latest takeover."""
    if not placements:
        raise ValueError("no placement read")
    return max(placements, key=lambda placement: placement.epoch)


def recovery_bound_s(settings: TakeoverSettings) -> float:
    """The longest time from a region stopping to another region taking over its requests.

    A request of the stopped region is due at most `lease_s` after the stop
    and may be taken `grace_s` after that; its region's last heartbeat is at
    most the stop itself, stale `heartbeat_stale_s` later. The taker sees both
    through its replica (`replication_lag_s`) and acts at its next sweep
    (`sweep_interval_s`):

        max(lease + grace, heartbeat_stale) + replication_lag + sweep_interval
    """
    return (
        max(settings.lease_s + settings.grace_s, settings.heartbeat_stale_s)
        + settings.replication_lag_s
        + settings.sweep_interval_s
    )
