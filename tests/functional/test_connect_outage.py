"""`$connect` during a store outage: the handshake is refused with a 5xx, within seconds.

API Gateway holds the upgrade request until the `$connect` integration ends
and makes no connection when it fails ("If the $connect request fails (e.g.,
due to AuthN/AuthZ failure or an integration failure), the connection will
not be made", https://docs.aws.amazon.com/apigateway/latest/developerguide/
apigateway-websocket-api-route-keys-connect-disconnect.html). DynamoDB is a
local port where nothing listens, reached as the local stack reaches its own.
"""

from __future__ import annotations

from streamer import aws, runtime, store
from streamer.entry import connect, disconnect
from tests.conftest import FakeContext, load_event


def test_connect_refuses_the_handshake_with_503_when_the_store_is_down(dynamodb_down):
    # WHEN a client connects while DynamoDB cannot be reached
    answer = connect.handler(load_event("connect"), FakeContext())

    # THEN the handshake is refused with a server error, not left to API Gateway's timeout
    assert answer == {"statusCode": 503}


def test_connect_stores_the_connection_under_the_routers_budget(aws_env, monkeypatch):
    # GIVEN a store that records the budget of the call that saves the connection
    budgets = []
    monkeypatch.setattr(store, "save_connection", lambda c: budgets.append(aws.current_budget()))
    runtime.reset()

    # WHEN a client connects
    answer = connect.handler(load_event("connect"), FakeContext())

    # THEN the save ran under the router's budget (seconds), not the patient one (minutes)
    assert answer == {"statusCode": 200}
    assert budgets == [aws.ROUTER]


def test_disconnect_forgets_the_connection_under_the_patient_budget(aws_env, monkeypatch):
    # GIVEN a store that records the budget of the call that forgets the connection
    budgets = []
    monkeypatch.setattr(store, "forget_connection", lambda c: budgets.append(aws.current_budget()))
    runtime.reset()

    # WHEN API Gateway reports the disconnection (nobody waits on the answer)
    answer = disconnect.handler(load_event("disconnect"), FakeContext())

    # THEN it was given the patient budget, to outlast a short outage
    assert answer == {"statusCode": 200}
    assert budgets == [aws.PATIENT]
