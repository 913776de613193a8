"""The call log: every DynamoDB call of an execution environment, for the benchmarks' replay."""

from __future__ import annotations

import json

from local import dynamodb, zygote
from local.calls import ENV
from local.functions import FunctionSpec
from local.isolation import IsolatedFunction


def test_each_dynamodb_call_of_a_worker_is_logged_with_its_invocation(tmp_path, monkeypatch):
    log_file = tmp_path / "calls.jsonl"
    monkeypatch.setenv(ENV, str(log_file))
    server = dynamodb.MotoServer("127.0.0.1", "us-east-1")
    # A zygote like the stack's: the runtime's botocore session made before the fork.
    zygote.stop_shared()
    zygote.shared(("streamer.aws",))
    spec = FunctionSpec("streamer-test", "tests.local.lambdas.list_tables", timeout_s=30)
    function = IsolatedFunction(spec, "us-east-1", "1")
    try:
        function.invoke({"endpoint_url": server.endpoint_url})
        function.invoke({"endpoint_url": server.endpoint_url})
    finally:
        function.close()
        server.stop()
        zygote.stop_shared()

    calls = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(c["function"], c["operation"], c["error"]) for c in calls] == [
        ("streamer-test", "ListTables", None)
    ] * 2
    assert len({c["invocation"] for c in calls}) == 2
    assert all(c["start"] <= c["end"] for c in calls)
    assert json.loads(calls[0]["body"]) == {}
