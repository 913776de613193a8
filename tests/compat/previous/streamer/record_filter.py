"""Which stream records a function takes, declared once as data.

The same declaration gives the event filter of the event source mapping (`pattern`, the
JSON Lambda evaluates before it invokes) and the test the function repeats on each record
it gets (`matches`), so a record the mapping lets through and a record the function acts on
are the same records. Plain data with no AWS imports: the Pulumi components read it too.

Lambda's filter rules for DynamoDB streams (docs: "Using event filtering with a DynamoDB
event source", https://docs.aws.amazon.com/lambda/latest/dg/with-ddb-filtering.html):
a pattern's keys all have to match; a list of values matches a field equal to one of them;
a string attribute of an image is matched under its type key, `{"S": [...]}`; a field the
record lacks matches nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streamer.transitions import Status, claims

#: The statuses a processor claims from (the lifecycle table's CLAIM rows): PENDING.
CLAIMABLE = tuple(status.value for status in Status if claims(status))
#: The attributes of a request item the processor's filter reads.
STATUS = "status"
ORIGIN_REGION = "origin_region"


@dataclass(frozen=True)
class RecordFilter:
    """Records whose event is one of `event_names` and whose new image has, for each
    (attribute, values) of `new_image`, a string attribute equal to one of those values."""

    event_names: tuple[str, ...]
    new_image: tuple[tuple[str, tuple[str, ...]], ...]

    def pattern(self) -> dict[str, Any]:
        """The filter pattern, as `FilterCriteria.Filters[].Pattern` takes it (before JSON)."""
        return {
            "eventName": list(self.event_names),
            "dynamodb": {
                "NewImage": {name: {"S": list(values)} for name, values in self.new_image}
            },
        }

    def matches(self, event_name: str, new_image: Mapping[str, Any] | None) -> bool:
        """Whether a record (its event name and raw new image) passes this filter."""
        if event_name not in self.event_names or new_image is None:
            return False
        for name, values in self.new_image:
            attribute = new_image.get(name)
            if not isinstance(attribute, Mapping) or attribute.get("S") not in values:
                return False
        return True


def processor_records(region: str) -> RecordFilter:
    """What `region`'s processor runs: a request written (INSERT) or put back (MODIFY) as
    PENDING in `region`. A global table's replica stream carries every region's writes, and
    the request runs in the region its client called."""
    return RecordFilter(
        event_names=("INSERT", "MODIFY"),
        new_image=((STATUS, CLAIMABLE), (ORIGIN_REGION, (region,))),
    )
