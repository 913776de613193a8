"""The lifecycle event bus locally: a custom EventBridge bus on a moto server.

moto's server serves `events` (and `sqs`, for a rule's queue target) next to
DynamoDB; with DynamoDB Local the stack starts a moto server just for the bus.
Functions reach it through `AWS_ENDPOINT_URL_EVENTBRIDGE` (botocore names it by service id).
"""

from __future__ import annotations

from local import dynamodb


class LocalEventBus:
    """One custom bus; `server` is set when this object started its own moto server."""

    def __init__(self, host: str, region: str, name: str, moto_endpoint: str | None) -> None:
        self.server = None if moto_endpoint else dynamodb.MotoServer(host)
        self.endpoint_url = moto_endpoint or self.server.endpoint_url
        self.name = name
        events = dynamodb.client("events", self.endpoint_url, region)
        if not any(bus["Name"] == name for bus in events.list_event_buses()["EventBuses"]):
            events.create_event_bus(Name=name)

    @property
    def environment(self) -> dict[str, str]:
        """What the functions need to put events on the bus."""
        from streamer import config

        return {config.EVENT_BUS: self.name, "AWS_ENDPOINT_URL_EVENTBRIDGE": self.endpoint_url}

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
