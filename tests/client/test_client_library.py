"""StreamerClient against a scripted protocol server over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from client import (
    DEFAULT_HEARTBEAT_SECONDS,
    Conflict,
    ConnectionFailed,
    ConnectionLost,
    ConnectionRefused,
    InvalidAction,
    NotFound,
    NotSynchronous,
    PayloadTooLarge,
    ProcessingFailed,
    Progress,
    ReconnectPolicy,
    RequestCancelled,
    RequestTimeout,
    StreamerClient,
    SubscriptionEnded,
    ValidationError,
)
from tests.client.fake_streamer_server import (
    FORBIDDEN_TOKEN,
    TERMINAL,
    VALID_TOKEN,
    FakeRequest,
    FakeStreamer,
    PageGate,
    run,
)

FAST_RECONNECT = ReconnectPolicy(max_attempts=5, initial_delay=0.001, max_delay=0.01)


def client_for(server: FakeStreamer, **options: Any) -> StreamerClient:
    options.setdefault("reconnect", FAST_RECONNECT)
    options.setdefault("heartbeat_interval", None)
    return StreamerClient(server.url, VALID_TOKEN, **options)


def report(pages: int, **extra: int) -> dict[str, int]:
    return {"pages": pages, "page_ms": 0, **extra}


def test_sync_action_returns_response_data():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a connected client
            # WHEN it calls and sends the sync echo action
            called = await client.call("echo", {"hello": "world"})
            sent = await client.send("echo", {"n": 1})
            # THEN both return the response data, and each message carried a valid id
            assert called == {"echo": {"hello": "world"}}
            assert sent == {"echo": {"n": 1}}
            ids = [m["id"] for m in server.received_actions("echo")]
            assert len(set(ids)) == 2
            # AND the handshake offered no permessage-deflate
            assert server.offered_extensions == [None]

    run(scenario())


def test_async_call_reports_ordered_progress_and_returns_the_result():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN an async action of 3 pages
            seen: list[Progress] = []
            # WHEN it is called with a progress callback and a chosen id
            result = await client.call(
                "generate_report", report(3), on_progress=seen.append, request_id="r-1"
            )
            # THEN the result arrives and the callback saw every page in order
            assert result == {"pages": 3, "report_id": "rep-r-1"}
            assert [p.seq for p in seen] == [1, 2, 3]
            assert [round(p.percentage) for p in seen] == [33, 67, 100]
            assert [p.message for p in seen] == ["page 1 of 3", "page 2 of 3", "page 3 of 3"]
            assert seen[0].metadata == {"page": 1}
            assert server.runs["r-1"] == 1

    run(scenario())


def test_async_progress_callbacks_are_awaited():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN an async callback
            seen: list[int] = []

            async def on_progress(progress: Progress) -> None:
                await asyncio.sleep(0)
                seen.append(progress.seq)

            # WHEN a report runs
            await client.call("generate_report", report(2), on_progress=on_progress)
            # THEN every update went through it
            assert seen == [1, 2]

    run(scenario())


def test_duplicate_and_stale_updates_are_dropped_by_seq():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a server that sends every update twice and then the previous one again
            server.duplicate_updates = True
            seen: list[int] = []
            # WHEN a report runs
            result = await client.call(
                "generate_report", report(4), on_progress=lambda p: seen.append(p.seq)
            )
            # THEN the callback saw each seq once, in order
            assert seen == [1, 2, 3, 4]
            assert result["pages"] == 4

    run(scenario())


def test_concurrent_calls_each_get_their_own_answer():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN one client
            # WHEN sync and async calls run at once
            results = await asyncio.gather(
                client.call("generate_report", report(3), request_id="a"),
                client.call("echo", {"x": 1}),
                client.call("generate_report", report(5), request_id="b"),
            )
            # THEN each call returns its own answer
            assert results == [
                {"pages": 3, "report_id": "rep-a"},
                {"echo": {"x": 1}},
                {"pages": 5, "report_id": "rep-b"},
            ]

    run(scenario())


def test_rejected_payload_raises_validation_error_with_details():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a report without pages
            # WHEN it is called
            with pytest.raises(ValidationError) as caught:
                await client.call("generate_report", {}, request_id="bad-1")
            # THEN the typed error carries the code, details and the request id, and nothing ran
            error = caught.value
            assert (error.code, error.request_id, error.request_status) == (
                "VALIDATION_ERROR",
                "bad-1",
                None,
            )
            assert error.details == {"fields": ["pages"]}
            assert server.requests == {}

    run(scenario())


def test_unknown_action_raises_invalid_action():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN / WHEN an action the server has no handler for
            # THEN INVALID_ACTION is raised
            with pytest.raises(InvalidAction) as caught:
                await client.call("no_such_action", {})
            assert caught.value.code == "INVALID_ACTION"

    run(scenario())


def test_failed_request_raises_processing_failed_after_its_progress():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a report that fails at page 2
            seen: list[int] = []
            # WHEN it is called
            with pytest.raises(ProcessingFailed) as caught:
                await client.call(
                    "generate_report",
                    report(3, fail_at_page=2),
                    on_progress=lambda p: seen.append(p.seq),
                )
            # THEN the error says it ran and FAILED, after page 1's progress
            assert (caught.value.code, caught.value.request_status) == (
                "PROCESSING_FAILED",
                "FAILED",
            )
            assert seen == [1]

    run(scenario())


def test_failed_sync_response_raises_its_typed_error():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a sync action whose response is success false with TIMEOUT
            # WHEN it is sent
            with pytest.raises(RequestTimeout) as caught:
                await client.send("fail_sync", {})
            # THEN the error is typed by code and marks the request FAILED
            assert (caught.value.code, caught.value.request_status) == ("TIMEOUT", "FAILED")

    run(scenario())


def test_send_of_an_async_action_says_it_was_acknowledged():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN an async action
            # WHEN it is sent as if it were sync
            with pytest.raises(NotSynchronous) as caught:
                await client.send("generate_report", report(1), request_id="s-1")
            # THEN the error names the stored request, which can still be followed
            assert caught.value.request_id == "s-1"
            assert await client.subscribe("s-1") == {"pages": 1, "report_id": "rep-s-1"}

    run(scenario())


@pytest.mark.parametrize(("token", "status"), [("wrong", 401), ("", 401), (FORBIDDEN_TOKEN, 403)])
def test_refused_handshake_raises_connection_refused_with_the_status(token, status):
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN a bad token, or one whose tenant is not allowed
            client = StreamerClient(server.url, token, heartbeat_interval=None)
            # WHEN the client connects
            with pytest.raises(ConnectionRefused) as caught:
                await client.connect()
            # THEN the refusal carries the HTTP status and is not retried
            assert caught.value.status_code == status
            assert server.handshake_attempts == 1

    run(scenario())


def test_token_goes_in_the_query_string_replacing_any_there():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN a URL that already has a stale token and another parameter
            url = server.url + "?stage=dev&token=stale"
            # WHEN the client connects with a valid token
            async with StreamerClient(url, VALID_TOKEN, heartbeat_interval=None) as client:
                # THEN the server accepted the valid one
                assert await client.call("echo", {}) == {"echo": {}}

    run(scenario())


def test_status_returns_the_snapshot_and_unknown_ids_raise_not_found():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a finished report
            await client.call("generate_report", report(2), request_id="st-1")
            # WHEN its status is asked, and that of an unknown id
            snapshot = await client.status("st-1")
            with pytest.raises(NotFound) as caught:
                await client.status("nobody")
            # THEN the snapshot is typed and complete, and the unknown id is NOT_FOUND
            assert (snapshot.request_id, snapshot.status, snapshot.is_terminal) == (
                "st-1",
                "COMPLETED",
                True,
            )
            assert snapshot.result == {"pages": 2, "report_id": "rep-st-1"}
            assert snapshot.progress == 100
            assert caught.value.code == "NOT_FOUND"

    run(scenario())


def test_subscribe_after_the_run_returns_the_result_from_another_connection():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN a report that finished while this client was away
            async with client_for(server) as owner:
                await owner.call("generate_report", report(2), request_id="away-1")
            # WHEN a new connection subscribes
            async with client_for(server) as later:
                result = await later.subscribe("away-1")
                # THEN the snapshot is the complete and its result comes back
                assert result == {"pages": 2, "report_id": "rep-away-1"}
                with pytest.raises(NotFound):
                    await later.subscribe("never-existed")

    run(scenario())


def test_subscribe_while_running_follows_progress_to_the_end():
    async def scenario():
        async with FakeStreamer() as server:
            gate = PageGate(page=3)
            server.before_page = gate
            async with client_for(server) as owner, client_for(server) as watcher:
                # GIVEN a report held before page 3 by its owner
                owned = asyncio.create_task(
                    owner.call("generate_report", report(4), request_id="w-1")
                )
                await gate.reached.wait()
                # WHEN another connection subscribes and the report goes on
                seen: list[int] = []
                snapshot_seen = asyncio.Event()

                def on_progress(progress: Progress) -> None:
                    seen.append(progress.seq)
                    snapshot_seen.set()

                watched = asyncio.create_task(watcher.subscribe("w-1", on_progress=on_progress))
                await snapshot_seen.wait()
                gate.opened.set()
                # THEN the watcher got the snapshot (page 2), the rest, and the result
                assert await watched == {"pages": 4, "report_id": "rep-w-1"}
                assert seen == [2, 3, 4]
                assert await owned == await watched

    run(scenario())


def test_cancel_ends_a_running_request_for_its_owner_too():
    async def scenario():
        async with FakeStreamer() as server:
            gate = PageGate(page=2)
            server.before_page = gate
            async with client_for(server) as owner, client_for(server) as other:
                # GIVEN a running report
                owned = asyncio.create_task(
                    owner.call("generate_report", report(5), request_id="c-1")
                )
                await gate.reached.wait()
                # WHEN another connection cancels it and the worker then notices
                cancelling = asyncio.create_task(other.cancel("c-1"))
                await server.wait_until(lambda: server.requests["c-1"].cancel_requested)
                gate.opened.set()
                completion = await cancelling
                # THEN the canceller sees the CANCELLED complete and the owner's call raises
                assert (completion.status, completion.seq) == ("CANCELLED", 2)
                assert completion.error is not None
                assert completion.error.code == "CANCELLED"
                with pytest.raises(RequestCancelled) as caught:
                    await owned
                assert (caught.value.code, caught.value.request_status) == (
                    "CANCELLED",
                    "CANCELLED",
                )

    run(scenario())


def test_subscribe_before_any_progress_skips_the_empty_snapshot():
    async def scenario():
        async with FakeStreamer() as server:
            gate = PageGate(page=1)
            server.before_page = gate
            async with client_for(server) as owner, client_for(server) as watcher:
                # GIVEN a report that has not reported anything yet
                owned = asyncio.create_task(
                    owner.call("generate_report", report(2), request_id="e-1")
                )
                await gate.reached.wait()
                # WHEN another connection subscribes (its snapshot is a progress with seq 0)
                seen: list[Progress] = []
                watched = asyncio.create_task(watcher.subscribe("e-1", on_progress=seen.append))
                # (the owner subscribed too: it chose the request id)
                await server.wait_until(lambda: len(server.requests["e-1"].subscribers) == 2)
                gate.opened.set()
                # THEN the callback sees only real updates, from seq 1
                assert await watched == await owned
                assert [p.seq for p in seen] == [1, 2]

    run(scenario())


def test_cancel_after_completion_changes_nothing_and_unknown_ids_raise():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a finished report
            await client.call("generate_report", report(1), request_id="done-1")
            # WHEN it is cancelled, and an unknown id too
            completion = await client.cancel("done-1")
            with pytest.raises(NotFound):
                await client.cancel("nobody")
            # THEN the answer is the terminal state it already had
            assert (completion.status, completion.result) == (
                "COMPLETED",
                {"pages": 1, "report_id": "rep-done-1"},
            )

    run(scenario())


def test_unsubscribe_ends_a_waiting_subscribe():
    async def scenario():
        async with FakeStreamer() as server:
            gate = PageGate(page=2)
            server.before_page = gate
            async with client_for(server) as owner, client_for(server) as watcher:
                # GIVEN a subscriber to a running report
                owned = asyncio.create_task(
                    owner.call("generate_report", report(3), request_id="u-1")
                )
                await gate.reached.wait()
                snapshot_seen = asyncio.Event()
                watched = asyncio.create_task(
                    watcher.subscribe("u-1", on_progress=lambda _: snapshot_seen.set())
                )
                await snapshot_seen.wait()
                subscribers = set(server.requests["u-1"].subscribers)
                # WHEN it unsubscribes
                await watcher.unsubscribe("u-1")
                # THEN its wait ends, the server dropped it, and the owner still gets the result
                with pytest.raises(SubscriptionEnded):
                    await watched
                assert len(server.requests["u-1"].subscribers) == len(subscribers) - 1
                gate.opened.set()
                assert (await owned)["pages"] == 3

    run(scenario())


def test_ping_answers_and_the_heartbeat_keeps_pinging():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN the default heartbeat is under the gateway's 10-minute idle timeout
            assert DEFAULT_HEARTBEAT_SECONDS < 600
            # WHEN a client with a short heartbeat stays connected
            async with client_for(server, heartbeat_interval=0.01) as client:
                assert await client.ping() >= 0
                # THEN pings keep arriving without any call
                await server.wait_until(lambda: len(server.received_actions("ping")) >= 4)

    run(scenario())


def test_oversized_and_malformed_requests_are_refused_before_sending():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN payloads the gateway would close the connection for, and a bad id
            # WHEN they are called
            with pytest.raises(PayloadTooLarge):
                await client.call("echo", {"blob": "x" * (128 * 1024)})
            with pytest.raises(ValueError):
                await client.call("echo", {}, request_id="has spaces")
            # THEN nothing was sent and the connection still works
            assert await client.call("echo", {"ok": True}) == {"echo": {"ok": True}}
            assert len(server.received) == 1

    run(scenario())


def test_a_closed_client_raises_connection_failed():
    async def scenario():
        async with FakeStreamer() as server:
            # GIVEN a closed client
            client = client_for(server)
            await client.connect()
            await client.close()
            # WHEN it is used
            # THEN it says so
            with pytest.raises(ConnectionFailed):
                await client.call("echo", {})

    run(scenario())


def test_drop_mid_run_reconnects_resubscribes_and_the_call_returns():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a server that cuts the connection right after seq 2, and holds
            # page 3 until the client has re-subscribed on a new connection
            async def after_update(request: FakeRequest, message: dict[str, Any]) -> None:
                if message["seq"] == 2:
                    server.drop_connections()

            async def before_page(request: FakeRequest, page: int) -> None:
                if page == 3:
                    await server.wait_until(
                        lambda: any(
                            m["request_id"] == request.request_id
                            for m in server.received_actions("subscribe")
                        )
                    )

            server.after_update = after_update
            server.before_page = before_page
            seen: list[int] = []
            # WHEN a report runs through the drop
            result = await client.call(
                "generate_report",
                report(4),
                on_progress=lambda p: seen.append(p.seq),
                request_id="drop-1",
            )
            # THEN the call returns, the repeated snapshot (seq 2) was dropped,
            # the client reconnected once, and the request ran once
            assert result == {"pages": 4, "report_id": "rep-drop-1"}
            assert seen == [1, 2, 3, 4]
            assert server.handshakes == 2
            assert server.runs["drop-1"] == 1

    run(scenario())


def test_complete_missed_while_away_arrives_by_resubscribe():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a drop after seq 1 and handshakes held until the request has ended
            async def after_update(request: FakeRequest, message: dict[str, Any]) -> None:
                if message["seq"] == 1:
                    server.handshake_gate = lambda: server.wait_until(
                        lambda: request.status in TERMINAL
                    )
                    server.drop_connections()

            server.after_update = after_update
            seen: list[int] = []
            # WHEN the report finishes while the client cannot connect
            result = await client.call(
                "generate_report", report(3), on_progress=lambda p: seen.append(p.seq)
            )
            # THEN the subscribe snapshot (the complete) still returns the result
            assert result["pages"] == 3
            assert seen == [1]
            assert server.handshakes == 2

    run(scenario())


@pytest.mark.parametrize("request_id", ["lost-1", None], ids=["chosen-id", "generated-id"])
@pytest.mark.parametrize("stored", [True, False], ids=["ack-lost", "request-lost"])
def test_drop_before_the_answer_resends_the_same_id_and_runs_once(stored, request_id):
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a connection cut when the request arrives: after storing it
            # (its acknowledgment is lost) or before (the request is lost)
            dropped: list[bool] = []

            async def on_message(connection: ServerConnection, message: dict[str, Any]) -> bool:
                if message.get("action") == "generate_report" and not dropped:
                    dropped.append(True)
                    connection.transport.abort()
                    return not stored
                return False

            server.on_message = on_message
            # WHEN the client calls
            result = await client.call("generate_report", report(2), request_id=request_id)
            # THEN it sent the same id again, the request ran once, and the call returned
            first, again = (m["id"] for m in server.received_actions("generate_report"))
            assert first == again == (request_id or first)
            assert result == {"pages": 2, "report_id": f"rep-{first}"}
            assert server.runs[first] == 1

    run(scenario())


def test_sync_call_through_a_drop_asks_again_until_the_first_run_answers():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a slow sync action whose connection is cut while it runs; the
            # first repeat meets the run still going (CONFLICT, retryable), and
            # the run finishes before the second repeat arrives
            async def on_message(connection: ServerConnection, message: dict[str, Any]) -> bool:
                repeats = len(server.received_actions("slow_echo"))
                if repeats == 1:
                    connection.transport.abort()
                elif repeats == 3:
                    server.sync_gate.set()
                    await server.sync_runs[message["id"]]
                return False

            server.on_message = on_message
            # WHEN it is called
            result = await client.call("slow_echo", {"n": 7})
            # THEN the call returns the first run's response, asked for three times
            assert result == {"echo": {"n": 7}}
            assert len({m["id"] for m in server.received_actions("slow_echo")}) == 1
            assert len(server.received_actions("slow_echo")) == 3
            assert len(server.sync_runs) == 1

    run(scenario())


def test_conflict_without_a_reconnect_is_the_callers_to_handle():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a slow sync request running under a chosen id
            first = asyncio.create_task(client.call("slow_echo", {}, request_id="twice"))
            await server.wait_until(lambda: "twice" in server.sync_runs)
            # WHEN the same id is called again while it runs
            async with client_for(server) as other:
                with pytest.raises(Conflict) as caught:
                    await other.call("slow_echo", {}, request_id="twice")
            # THEN CONFLICT (retryable) is raised at once, and the first call still returns
            assert caught.value.retryable is True
            assert len(server.received_actions("slow_echo")) == 2
            server.sync_gate.set()
            assert await first == {"echo": {}}

    run(scenario())


def test_pending_status_is_asked_again_after_a_drop():
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a finished request and a connection cut when the first status arrives
            await client.call("generate_report", report(1), request_id="s-2")

            async def on_message(connection: ServerConnection, message: dict[str, Any]) -> bool:
                if (
                    message.get("action") == "status"
                    and len(server.received_actions("status")) == 1
                ):
                    connection.transport.abort()
                    return True
                return False

            server.on_message = on_message
            # WHEN status is asked
            snapshot = await client.status("s-2")
            # THEN it is answered on the new connection
            assert snapshot.status == "COMPLETED"
            assert len(server.received_actions("status")) == 2

    run(scenario())


@pytest.mark.parametrize(
    ("status", "error_type", "attempts"),
    [
        (503, ConnectionLost, 1 + FAST_RECONNECT.max_attempts),
        (401, ConnectionRefused, 2),
    ],
    ids=["unavailable-gives-up-after-the-policy", "token-expired-fails-at-once"],
)
def test_reconnect_that_keeps_failing_ends_the_call(status, error_type, attempts):
    async def scenario():
        async with FakeStreamer() as server, client_for(server) as client:
            # GIVEN a server that drops the connection after seq 1 and then
            # refuses every handshake with 503 (gone for good) or 401 (token expired)
            async def after_update(request: FakeRequest, message: dict[str, Any]) -> None:
                if message["seq"] == 1:
                    server.refuse_status = status
                    server.drop_connections()

            server.after_update = after_update
            # WHEN a report runs
            # THEN the call raises; 503 only after every attempt of the policy, 401 at once
            with pytest.raises(error_type) as caught:
                await client.call("generate_report", report(3))
            assert caught.value.code == {503: "CONNECTION_LOST", 401: "UNAUTHORIZED"}[status]
            assert server.handshake_attempts == attempts

    run(scenario())
