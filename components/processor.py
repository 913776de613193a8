"""The processor's event source mapping on the requests stream of one region.

Only records this region must run reach the processor, as
`streamer.record_filter.processor_records` says: INSERT or MODIFY whose new image is
PENDING and whose `origin_region` is this region (a global table's replica stream also
carries the other regions' writes); the processor repeats the same test. Failures are
bounded: the batch is bisected, retried a limited number of times, dropped after a
maximum age, and what is dropped goes to the dead-letter queue (whose depth alarms, with
the mapping's iterator age: components/service_alarms.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.settings import ProcessorSettings
from streamer import catalog
from streamer.record_filter import processor_records


def stream_filter(region: str) -> str:
    """The filter pattern for `region`'s mapping, as Lambda expects it (JSON text)."""
    return json.dumps(processor_records(region).pattern(), sort_keys=True)


@dataclass
class ProcessorMappingArgs:
    """The processor, the stream it reads, where failures go and how batches are shaped."""

    region: str
    #: The processor's `live` alias: the mapping invokes it, never $LATEST.
    function: aws.lambda_.Alias
    stream_arn: pulumi.Input[str]
    dead_letter_queue: aws.sqs.Queue
    settings: ProcessorSettings


class ProcessorMapping(pulumi.ComponentResource):
    """The event source mapping, failures bounded and sent to the dead-letter queue."""

    def __init__(
        self, name: str, args: ProcessorMappingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("streamer:components:ProcessorMapping", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s = args.settings
        mapping = aws.lambda_.EventSourceMapping(
            f"{name}-mapping",
            event_source_arn=args.stream_arn,
            function_name=args.function.arn,
            # From the oldest retained record: a mapping replaced while requests
            # arrive must not skip them. Claims are conditional, so a record seen
            # twice runs once.
            starting_position="TRIM_HORIZON",
            filter_criteria=aws.lambda_.EventSourceMappingFilterCriteriaArgs(
                filters=[
                    aws.lambda_.EventSourceMappingFilterCriteriaFilterArgs(
                        pattern=stream_filter(args.region)
                    )
                ]
            ),
            batch_size=s.batch_size,
            maximum_batching_window_in_seconds=s.batch_window_s,
            parallelization_factor=s.parallelization_factor,
            function_response_types=["ReportBatchItemFailures"],
            bisect_batch_on_function_error=(
                catalog.REQUESTS_STREAM_MAPPING.bisect_batch_on_function_error
            ),
            maximum_retry_attempts=s.max_retry_attempts,
            maximum_record_age_in_seconds=s.max_record_age_s,
            destination_config=aws.lambda_.EventSourceMappingDestinationConfigArgs(
                on_failure=aws.lambda_.EventSourceMappingDestinationConfigOnFailureArgs(
                    destination_arn=args.dead_letter_queue.arn
                )
            ),
            opts=child,
        )
        self.mapping_uuid = mapping.uuid
        self.register_outputs({"mapping_uuid": mapping.uuid})
