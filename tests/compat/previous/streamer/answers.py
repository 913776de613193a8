"""The answer to a message that failed, whatever failed: always a protocol `error`.

A client waits for the answer that names the `id` it sent, so every failure
is answered, with that `request_id` when the message had one (docs/protocol.md
section 3):

- a `StreamerError` is answered as it is;
- a store failure (DynamoDB unreachable, slow past the call budget,
  throttling, failing, or PynamoDB failing to read its error) is
  `UNAVAILABLE`: nothing was stored, try again after `retry_after_ms`;
- anything else is an `INTERNAL_ERROR` whose correlation id is logged with
  the stack trace, which the client never sees.
"""

from __future__ import annotations

import logging
from typing import Any

from streamer.errors import StreamerError, Unavailable
from streamer.execution import internal_error
from streamer.protocol import error_message

log = logging.getLogger("streamer.router")

#: When a client may try again after a store outage: about one router call
#: budget (`streamer.aws.ROUTER`), so a retry is not spent on the same outage.
STORE_RETRY_AFTER_MS = 2000


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and the exceptions it was raised from or while handling, innermost last."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_store_failure(error: BaseException) -> bool:
    """Whether `error` comes from a store call: the store's, PynamoDB's or botocore's.

    An error raised while handling one of theirs counts too: PynamoDB's own
    error mapping can fail on a botocore error that has no response.
    """
    from botocore.exceptions import BotoCoreError, ClientError
    from pynamodb.exceptions import PynamoDBException

    from streamer.store import StoreUnavailable

    kinds = (StoreUnavailable, PynamoDBException, BotoCoreError, ClientError)
    return any(isinstance(link, kinds) for link in _chain(error))


def failure_answer(error: Exception, request_id: str | None) -> dict[str, Any]:
    """The `error` message answering a message that failed with `error`."""
    if isinstance(error, StreamerError):
        return error_message(error, request_id)
    if is_store_failure(error):
        log.warning(
            "store unavailable",
            extra={"fields": {"cause": type(error).__name__, "detail": str(error)}},
        )
        unavailable = Unavailable(
            "the request store is unavailable; nothing was stored, try again",
            retry_after_ms=STORE_RETRY_AFTER_MS,
        )
        return error_message(unavailable, request_id)
    internal = internal_error()
    log.error(
        "message failed",
        exc_info=error,
        extra={"fields": {"correlation_id": internal.details["correlation_id"]}},
    )
    return error_message(internal, request_id)
