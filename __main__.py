"""Streamer on AWS: read the stack's configuration and compose the components.

One global table set in the first region with replicas in the others, one regional
stack (API, functions, processor mapping, sweeper) per region on its own provider,
and posting rights to every region's API for every region's senders.
"""

import pulumi
import pulumi_aws as aws

from components.connections import ConnectionsAccess, ConnectionsAccessArgs
from components.keys import region_key
from components.package import Artifacts
from components.regional import RegionalStack, RegionalStackArgs
from components.settings import StackSettings
from components.tables import Tables, TablesArgs

project, stack = pulumi.get_project(), pulumi.get_stack()
settings = StackSettings.load(pulumi.Config(), stack)
artifacts = Artifacts.load(settings.artifacts_dir, allow_placeholder=pulumi.runtime.is_dry_run())
artifacts.check_app(settings.runtime.app_module)

providers = {region: aws.Provider(f"aws-{region}", region=region) for region in settings.regions}
# Each region's customer-managed key (created or given), None for AWS's own keys.
keys = {
    region: region_key(f"{project}-{region}", settings, region, f"{project}-{stack}", provider)
    for region, provider in providers.items()
}
tables = Tables(
    f"{project}-tables",
    TablesArgs(
        regions=settings.regions,
        deletion_protection=settings.deletion_protection,
        # Pulumi refuses to delete or replace protected tables; a replacement the stack
        # allows (streamer:allowTableReplacement) must not be refused.
        protect=settings.deletion_protection and not settings.allow_table_replacement,
        kms_key_arns={region: key for region, key in keys.items() if key is not None},
    ),
    opts=pulumi.ResourceOptions(providers=[providers[settings.home_region]]),
)
regions = {
    region: RegionalStack(
        f"{project}-{region}",
        RegionalStackArgs(
            region=region,
            prefix=f"{project}-{stack}",
            settings=settings,
            tables=tables.in_region(region),
            artifacts=artifacts,
            kms_key_arn=keys[region],
        ),
        opts=pulumi.ResourceOptions(providers=[providers[region]]),
    )
    for region in settings.regions
}
for region, regional in regions.items():
    ConnectionsAccess(
        f"{project}-{region}-connections-access",
        ConnectionsAccessArgs(
            roles=regional.sender_roles,
            connections_arns=[other.connections_arn for other in regions.values()],
        ),
        opts=pulumi.ResourceOptions(providers=[providers[region]]),
    )

pulumi.export("websocketUrls", {region: r.url for region, r in regions.items()})
pulumi.export("httpUrls", {region: r.http_url for region, r in regions.items()})
pulumi.export(
    "managementEndpoints", {region: r.management_endpoint for region, r in regions.items()}
)
if settings.domain_name is not None:
    pulumi.export(
        "customDomainUrls", {region: r.custom_domain_url for region, r in regions.items()}
    )
    # Point the domain's DNS record (CNAME or alias, per region) at these hosts.
    pulumi.export(
        "customDomainTargets", {region: r.custom_domain_target for region, r in regions.items()}
    )
pulumi.export("tableNames", tables.names)
pulumi.export(
    "notificationTopics", {region: r.notification_topic_arn for region, r in regions.items()}
)
pulumi.export("eventBuses", {region: r.event_bus_name for region, r in regions.items()})
pulumi.export("alarmActions", {region: r.alarm_actions for region, r in regions.items()})
