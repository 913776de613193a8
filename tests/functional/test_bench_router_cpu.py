"""The router CPU benchmark (bench/router_cpu.py) compares like with like: its bare handler
answers the benchmark's frame exactly as the router does."""

from __future__ import annotations

import json

from bench import router_cpu
from tests.conftest import FakeContext
from tests.functional.helpers import Client


def test_the_bare_handler_answers_the_echo_frame_as_the_router_does(test_app):
    event = router_cpu.echo_event()
    client = Client(router_cpu.CONNECTION_ID)
    client.connect()

    from_router = client.send_raw(event["body"])
    bare = router_cpu.bare_handler(event, FakeContext())

    assert bare["statusCode"] == 200
    answer = json.loads(bare["body"])
    # The request id is made per answer by both: same form, not the same value.
    assert answer.pop("request_id").startswith("req-")
    assert from_router.pop("request_id").startswith("req-")
    assert answer == from_router
    assert from_router["data"] == {"echo": {"hello": "world"}}
