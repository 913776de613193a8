"""A handler for `tests/local/test_iam.py`: one AWS call as its event says, from the runtime's
own botocore session, answering what the call returned or the error the SDK raised."""

from __future__ import annotations

from typing import Any


def call(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    from streamer import aws

    client = aws.create_client(event["service"], **event.get("client", {}))
    try:
        answer = getattr(client, event["operation"])(**event["params"])
    except ClientError as error:
        return {
            "error": {
                "class": type(error).__name__,
                "code": error.response["Error"]["Code"],
                "message": error.response["Error"]["Message"],
                "status": error.response["ResponseMetadata"]["HTTPStatusCode"],
            }
        }
    answer.pop("ResponseMetadata", None)
    return {"answer": answer}


def store_call(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One call of the runtime's store (`streamer.store`), as a function's real work makes it;
    a store failure answers as the runtime sees it (`StoreUnavailable` and DynamoDB's code)."""
    from streamer import runtime, store

    # What every entry point does first: the settings, and the models on their tables.
    runtime.current()
    try:
        answer = getattr(store, event["call"])(*event["args"])
    except store.StoreUnavailable as error:
        return {"error": {"class": type(error).__name__, "code": str(error)}}
    return {"answer": answer}
