"""The keys of the three tables and of the requests' due index, built in one place.

A request is addressable only through its owner (`tenant#user`), so an id of
another tenant cannot even be looked up. The `by_due` index is sparse and
split per region in two partitions: the sweeper's (requests that must move on
by `due_at`) and the poller's (WAITING requests whose next poll is at `due_at`).
"""

from __future__ import annotations


def owner_key(tenant_id: str, user_id: str) -> str:
    """The requests table's owner part of a key, and the connections' `by_user` key."""
    return f"{tenant_id}#{user_id}"


def request_key(owner: str, request_id: str) -> str:
    """The key of one request, in the requests and the subscriptions tables."""
    return f"{owner}#{request_id}"


def sweep_partition(region: str) -> str:
    """The `by_due` partition the sweeper reads: leases, retries, pickups, unsent completes."""
    return region


def poll_partition(region: str) -> str:
    """The `by_due` partition of a region's WAITING requests: the poller's, not the sweeper's."""
    return f"{region}#waiting"
