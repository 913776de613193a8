"""The three DynamoDB tables, as global tables when the stack spans several regions.

Keys, indexes, TTL attribute and stream view come from `streamer.schema`, the same
definitions the runtime's models use. Each table is created by the home region's
provider with a 2019.11.21 replica in every other region; `in_region` gives the
names, the tables' ARNs in every region of the stack (a region's functions may write to
any region's replica: a request's decider, issue 16) and that region's stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from streamer.schema import REQUESTS, TABLES, TableSchema

#: Global tables replicate through streams carrying both images, so every replicated
#: table needs one; alone, only the requests table has a stream (for the processor).
REPLICATED_STREAM_VIEW = "NEW_AND_OLD_IMAGES"


@dataclass(frozen=True)
class TablesArgs:
    """The regions (first is home) and whether deleting the tables must be refused."""

    regions: Sequence[str]
    deletion_protection: bool = False
    #: Pulumi refuses to delete or replace the tables (prod, unless replacement is allowed).
    protect: bool = False
    #: The customer-managed key of each region (the home table's and each replica's);
    #: none: DynamoDB's AWS-managed key.
    kms_key_arns: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class RegionalTables:
    """The tables as one region's functions see them."""

    names: Mapping[str, pulumi.Output[str]]
    #: By region of the stack, in stack order: the ARN of each table there (the home
    #: table's own, a replica's elsewhere), by logical name.
    arns_by_region: Mapping[str, Mapping[str, pulumi.Output[str]]]
    #: The region's own replica's stream of the requests table.
    requests_stream_arn: pulumi.Output[str]


class Tables(pulumi.ComponentResource):
    """connections, requests and subscriptions: on-demand, TTL, PITR, encrypted, replicated."""

    tables: dict[str, aws.dynamodb.Table]

    def __init__(
        self, name: str, args: TablesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("streamer:components:Tables", name, None, opts)
        self._home, *self._replica_regions = args.regions
        self.tables = {
            schema.logical_name: self._table(f"{name}-{schema.logical_name}", schema, args)
            for schema in TABLES
        }
        self.names = {logical: table.name for logical, table in self.tables.items()}
        self.register_outputs({"table_names": self.names})

    def _table(self, name: str, schema: TableSchema, args: TablesArgs) -> aws.dynamodb.Table:
        stream_view = schema.stream_view_type or (
            REPLICATED_STREAM_VIEW if self._replica_regions else None
        )
        return aws.dynamodb.Table(
            name,
            billing_mode="PAY_PER_REQUEST",
            hash_key=schema.hash_key,
            range_key=schema.range_key,
            attributes=[
                aws.dynamodb.TableAttributeArgs(name=key, type=schema.attribute_type(key))
                for key in schema.key_attributes
            ],
            global_secondary_indexes=[
                aws.dynamodb.TableGlobalSecondaryIndexArgs(
                    name=index.name,
                    projection_type=index.projection,
                    non_key_attributes=list(index.included) or None,
                    key_schemas=[
                        aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(
                            attribute_name=key, key_type=key_type
                        )
                        for key, key_type in ((index.hash_key, "HASH"), (index.range_key, "RANGE"))
                        if key
                    ],
                )
                for index in schema.indexes
            ],
            ttl=aws.dynamodb.TableTtlArgs(attribute_name=schema.ttl_attribute, enabled=True),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(
                enabled=True, kms_key_arn=args.kms_key_arns.get(self._home)
            ),
            stream_enabled=stream_view is not None,
            stream_view_type=stream_view,
            deletion_protection_enabled=args.deletion_protection,
            replicas=[
                aws.dynamodb.TableReplicaArgs(
                    region_name=region,
                    point_in_time_recovery=True,
                    deletion_protection_enabled=args.deletion_protection,
                    propagate_tags=True,
                    # A replica is encrypted with a key of its own region.
                    kms_key_arn=args.kms_key_arns.get(region),
                )
                for region in self._replica_regions
            ],
            # With deletion protection the table's items outlive the stack: Pulumi keeps
            # the table when its resource goes (docs/deploying.md, "Changing the tables").
            opts=pulumi.ResourceOptions(
                parent=self, protect=args.protect, retain_on_delete=args.deletion_protection
            ),
        )

    def in_region(self, region: str) -> RegionalTables:
        """Names, every region's ARNs, and `region`'s stream (the home table's own, or
        its replica's there)."""
        requests = self.tables[REQUESTS.logical_name]
        if region == self._home:
            stream = requests.stream_arn
        else:
            stream = _replica(requests, region, "stream_arn")
        return RegionalTables(
            names=self.names,
            arns_by_region={
                each: self._arns(each) for each in (self._home, *self._replica_regions)
            },
            requests_stream_arn=stream,
        )

    def _arns(self, region: str) -> dict[str, pulumi.Output[str]]:
        if region == self._home:
            return {logical: table.arn for logical, table in self.tables.items()}
        return {logical: _replica(table, region, "arn") for logical, table in self.tables.items()}


def _replica(table: aws.dynamodb.Table, region: str, attribute: str) -> pulumi.Output[str]:
    def pick(replicas: Sequence[aws.dynamodb.outputs.TableReplica] | None) -> str:
        for replica in replicas or ():
            if replica.region_name == region:
                return getattr(replica, attribute)
        raise ValueError(f"table has no replica in {region}")

    return table.replicas.apply(pick)
