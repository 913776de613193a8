"""A sweeper's takeover of the stalled requests of regions that stopped (`streamer.regions`).

Each sweeper run of a multi-region deployment first records its own region's
heartbeat (`store.beat`) and sweeps its own region; then it looks at every
other region whose heartbeat is stale: in its own replica, it reads that
region's due partitions (the sweeper's and the poller's, every shard), and
the per-user cap's index for the requests it alone watches
(`keys.watched_by`), for requests due at least the takeover grace ago (a
running one: its lease), and
takes each over with one conditional write at the request's decider
(`store.take_over_request`); a decider that does not answer is asked again at
the next run. The write bumps the epoch, so
the stopped region's processor, sweeper or poller, should it come back, has
its writes refused there; it moves the request's runner (`origin_region`) and
due partition to this region. A request the sweeper would re-drive is re-driven
by the same write: this region's processor claims it from its own replica's
stream and runs it from its checkpoint. One the sweeper would end or postpone
is handed back to the sweep, which acts on it under the new epoch; a WAITING
one is polled by this region's poller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from streamer import metric_names, metrics, store
from streamer.config import PICKUP_TIMEOUT_MS
from streamer.keys import due_shard, poll_partition, shards_read, sweep_partition
from streamer.models import PROCESSING, WAITING, RequestItem, decider_of
from streamer.regions import Placement, Refusal, TakeoverSettings, heartbeat_stale, takeover

log = logging.getLogger(__name__)

#: What a read of a stopped region's requests that failed is reported as (`Taken.failed`).
READ_FAILED = "takeover read"


@dataclass
class Taken:
    """What one run took over from stopped regions."""

    #: Re-driven to PENDING here, or moved here WAITING: ids.
    redriven: list[str] = field(default_factory=list)
    #: Moved here, for this run's sweep to act on (end or postpone).
    moved: list[RequestItem] = field(default_factory=list)
    #: Keys that could not be read or written, with the error.
    failed: list[tuple[str, Exception]] = field(default_factory=list)


def stale_regions(
    own: str, regions: Sequence[str], now_ms: int, settings: TakeoverSettings
) -> list[str]:
    """The regions other than `own` whose heartbeat this replica sees stale."""
    others = [region for region in regions if region != own]
    if not others:
        return []
    beats = store.last_beats(others)
    return [r for r in others if heartbeat_stale(beats.get(r), now_ms / 1000, settings)]


def take_over(
    own: str,
    stopped: str,
    now_ms: int,
    settings: TakeoverSettings,
    *,
    redrive_seq: Callable[[RequestItem], int | None],
    shards: int,
    max_items: int,
    turn: int,
) -> Taken:
    """Take over the requests of `stopped` (its heartbeat read stale) due by the grace.

    `redrive_seq` says, for a request read, the seq its redrive goes on from if
    the sweeper would re-drive it now, else None.
    """
    taken = Taken()
    before = now_ms - int(settings.grace_s * 1000)
    read = shards_read(shards, turn)
    readers = [
        *(
            lambda p=partition: store.due_items(
                stopped, before, limit=max_items, shards=read, partition=p
            )
            for partition in (sweep_partition, poll_partition)
        ),
        # Those the per-user cap's index alone watches (`keys.watched_by`).
        lambda: store.unkeyed_due_items(stopped, before, limit=max_items, segments=shards),
    ]
    for reader in readers:
        try:
            found = reader()
        except Exception as error:
            # One reader that fails (the cap's index backfilling, a throttled scan) leaves
            # the others to run; what it would have found is read again at the next run.
            taken.failed.append((READ_FAILED, error))
            continue
        for due in found:
            if isinstance(due, store.Unreadable):
                taken.failed.append((due.request_key, due.error))
                continue
            try:
                _take_one(due, own, stopped, now_ms, settings, shards, redrive_seq, taken)
            except store.StoreUnavailable as error:
                # The decider does not answer (the stopped region's DynamoDB is down
                # too): the next request would wait out the same call budget. Try
                # again at the next run.
                taken.failed.append((due.request_key, error))
                return _counted(taken, stopped)
            except Exception as error:
                # Whatever one request does wrong, the others are still taken.
                taken.failed.append((due.request_key, error))
    return _counted(taken, stopped)


def _counted(taken: Taken, stopped: str) -> Taken:
    count = len(taken.redriven) + len(taken.moved)
    metrics.count(metric_names.REGION_TAKEOVERS, count)
    if count:
        log.warning(
            "took over requests of a stopped region",
            extra={"fields": {"region": stopped, "taken": count}},
        )
    return taken


def _take_one(
    item: RequestItem,
    own: str,
    stopped: str,
    now_ms: int,
    settings: TakeoverSettings,
    shards: int,
    redrive_seq: Callable[[RequestItem], int | None],
    taken: Taken,
) -> None:
    if item.due_at is None:
        # Left the due index since the index was read (it ended, or moved): nothing to take.
        return
    placement = Placement(
        decider=decider_of(item.owner), runner=item.origin_region, epoch=item.fence_epoch
    )
    decision = takeover(
        placement,
        ended=item.is_terminal,
        due_at=_due_at(item) / 1000,
        taker=own,
        now=now_ms / 1000,
        # Only `stopped` was read stale; a runner other than it is not taken from.
        heartbeats={} if item.origin_region == stopped else {item.origin_region: now_ms / 1000},
        # Failover is off (the contract): a decider that does not answer fails the write.
        decider_reachable=True,
        settings=settings,
    )
    if isinstance(decision, Refusal):
        return
    seq = redrive_seq(item)
    waiting = item.status == WAITING
    if not store.take_over_request(
        item,
        decision.fence,
        runner=own,
        shard=due_shard(item.request_key, shards),
        now_ms=now_ms,
        redrive_seq=seq,
        next_due_at=now_ms + PICKUP_TIMEOUT_MS,
    ):
        return
    if seq is not None or waiting:
        taken.redriven.append(item.request_id)
    else:
        taken.moved.append(item)


def _due_at(item: RequestItem) -> int:
    """When the request is due for a takeover: a PROCESSING one not before its lease ends.

    A claim may leave a request in the due index at its pickup time while its
    worker's lease runs on (`transitions.claim_due_at`); that worker may be
    alive in a region whose heartbeat only reads stale (its sweeper failing,
    or the connections table replicating late). Taking the request then would
    fence off a live run.
    """
    due_at = int(item.due_at)
    if item.status == PROCESSING and item.lease_expires_at is not None:
        return max(due_at, int(item.lease_expires_at))
    return due_at
