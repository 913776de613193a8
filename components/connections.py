"""Who may post to clients, and through which APIs.

A request runs in the region its client called, but a subscriber may be connected
through another region's API: each connection record carries its own management
endpoint, and the runtime posts there. So the senders of every region
(`policies.CONNECTION_SENDERS`) may post to the `@connections` of every regional API of this
stack, and of no other API. Granted once all regions exist, since it names them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import policies


@dataclass
class ConnectionsAccessArgs:
    """The roles allowed to post, by function name, and the `@connections` ARNs they may use."""

    roles: Mapping[str, aws.iam.Role]
    connections_arns: Sequence[pulumi.Input[str]]


class ConnectionsAccess(pulumi.ComponentResource):
    """One inline policy per sending role: `execute-api:ManageConnections` on the given ARNs."""

    def __init__(
        self, name: str, args: ConnectionsAccessArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("streamer:components:ConnectionsAccess", name, None, opts)
        for function, role in args.roles.items():
            aws.iam.RolePolicy(
                f"{name}-{function}",
                role=role.id,
                policy=policies.document(
                    [policies.statement((policies.MANAGE_CONNECTIONS,), args.connections_arns)]
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({})
