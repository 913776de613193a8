"""An EventBridge schedule rule: invokes a function every period with a "Scheduled Event"."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

from local.functions import FunctionError, LambdaFunction


def scheduled_event(rule_arn: str, region: str, account_id: str, epoch_s: float) -> dict:
    """The event EventBridge sends a scheduled rule's target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s)),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class Schedule:
    """Invokes `function` every `period_s` seconds, one run at a time, until stopped."""

    def __init__(
        self, function: LambdaFunction, period_s: float, region: str, account_id: str
    ) -> None:
        self._function = function
        self._period_s = period_s
        self._region = region
        self._account_id = account_id
        self._rule_arn = f"arn:aws:events:{region}:{account_id}:rule/{function.spec.name}-schedule"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-schedule")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self._period_s):
            event = scheduled_event(self._rule_arn, self._region, self._account_id, time.time())
            # Logged by the function; EventBridge, too, just tries again next time.
            with contextlib.suppress(FunctionError):
                self._function.invoke(event)
