"""The publish function's logic: notifications out of SNS and EventBridge events.

Both sources invoke the function asynchronously. A notification that cannot
be handled (malformed, or DynamoDB unavailable) is logged with its reason
and, once every other record of the event was handled, the invocation fails
with `PublishFailed`. Lambda then retries the event (at most twice, as the
deployed function is configured) and afterwards hands it to the function's
on-failure destination, the SQS dead-letter queue, with the error message.
A poison message is therefore tried three times and parked, never retried
forever. SNS delivers one record per invocation, so a retry repeats nothing
that was delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from streamer import store
from streamer.config import NOTIFICATION_DETAIL_TYPE
from streamer.delivery import Delivery
from streamer.protocol import now_ms
from streamer.topics import InvalidNotification, Notification, PublishReport, publish

log = logging.getLogger(__name__)


class PublishFailed(Exception):
    """Some notifications of the event were not delivered; the message lists why."""


@dataclass(frozen=True)
class Envelope:
    """One notification as it arrived: where from, an id to log, and the body."""

    source: str
    message_id: str
    body: Any


def envelopes(event: Any) -> Iterator[Envelope]:
    """The notifications of a Lambda event from SNS or EventBridge.

    SNS: `Records[].Sns.Message` is the JSON text the publisher sent.
    EventBridge: `detail` is the object the publisher put, under the
    detail-type `Real-time Notification`. Anything else yields one envelope
    whose body is rejected with the reason.
    """
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        for record in event["Records"]:
            sns = record.get("Sns") if isinstance(record, dict) else None
            if not isinstance(sns, dict) or record.get("EventSource") != "aws:sns":
                yield Envelope("unknown", "", InvalidNotification("not an SNS record"))
                continue
            yield Envelope("sns", str(sns.get("MessageId", "")), sns.get("Message"))
        return
    if isinstance(event, dict) and "detail-type" in event:
        event_id = str(event.get("id", ""))
        if event.get("detail-type") != NOTIFICATION_DETAIL_TYPE:
            reason = f"detail-type is not {NOTIFICATION_DETAIL_TYPE!r}"
            yield Envelope("eventbridge", event_id, InvalidNotification(reason))
            return
        yield Envelope("eventbridge", event_id, event.get("detail"))
        return
    yield Envelope("unknown", "", InvalidNotification("neither an SNS nor an EventBridge event"))


def handle_event(event: Any, delivery: Delivery, retention_s: int) -> dict[str, Any]:
    """Deliver every notification of `event`; raises `PublishFailed` if any was not."""
    total = PublishReport()
    notifications = 0
    problems: list[str] = []
    for envelope in envelopes(event):
        fields = {"source": envelope.source, "message_id": envelope.message_id}
        try:
            if isinstance(envelope.body, InvalidNotification):
                raise envelope.body
            notification = Notification.parse(envelope.body)
            report = publish(notification, delivery, now=now_ms(), retention_s=retention_s)
        except InvalidNotification as error:
            log.warning("notification rejected", extra={"fields": {**fields, "reason": str(error)}})
            problems.append(f"{envelope.message_id or envelope.source}: rejected: {error}")
            continue
        except store.StoreUnavailable as error:
            log.warning(
                "notification not delivered",
                extra={"fields": {**fields, "error_code": str(error)}},
            )
            problems.append(f"{envelope.message_id or envelope.source}: store unavailable")
            continue
        notifications += 1
        total.delivered += report.delivered
        total.gone += report.gone
        total.failed += report.failed
        log.info(
            "notification published",
            extra={
                "fields": {
                    **fields,
                    "tenant_id": notification.tenant_id,
                    "topic": notification.topic,
                    "event": notification.event,
                    "delivered": report.delivered,
                }
            },
        )
    if problems:
        raise PublishFailed("; ".join(problems))
    return {
        "notifications": notifications,
        "delivered": total.delivered,
        "gone": total.gone,
        "failed": total.failed,
    }
