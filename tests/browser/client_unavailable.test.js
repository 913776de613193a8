// client/js/streamer.js against a server that answers badly: a call never hangs.
// UNAVAILABLE (the store is out; nothing was stored) is sent again with backoff until
// `unavailableDeadlineMs`, then rejects the call; a message nothing answers, or answered
// by an error naming no message, rejects with NO_ANSWER after `answerTimeoutMs`.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import WebSocket from "ws";
import { StreamerClient, StreamerError } from "../../client/js/streamer.js";
import { startFakeServer } from "./fake_server.js";

const FAST = { initialDelayMs: 1, maxDelayMs: 10 };
const OUTAGE = { retry_after_ms: 20 };

/** An `onMessage` hook answering the first `times` messages of `action` UNAVAILABLE. */
function outFor(action, times, details = OUTAGE, arrivals = null) {
  let answered = 0;
  return (socket, message) => {
    if (message.action !== action) return false;
    arrivals?.push(performance.now());
    if (answered >= times) return false;
    answered += 1;
    const error = { code: "UNAVAILABLE", message: "the request store is unreachable", details, retryable: true };
    socket.send(JSON.stringify({ type: "error", request_id: message.id, error }));
    return true;
  };
}

const swallowing = (action) => (socket, message) => message.action === action;

describe("a server that answers badly never hangs a call", () => {
  let server;
  const clients = [];
  const open = async (options = {}) => {
    const client = new StreamerClient(server.url, "token", { WebSocket, ...FAST, pingIntervalMs: null, ...options });
    clients.push(client);
    await client.connect();
    return client;
  };

  beforeEach(async () => {
    server = await startFakeServer();
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await server.close();
  });

  it("sends a call answered UNAVAILABLE again, and it returns, having run once", async () => {
    const client = await open();
    server.onMessage = outFor("generate_report", 3);
    const result = await client.call("generate_report", { pages: 2 }, { id: "out-1" });
    assert.deepEqual(result, { pages: 2, report_id: "rep-out-1" });
    assert.deepEqual(server.receivedActions("generate_report").map((m) => m.id), ["out-1", "out-1", "out-1", "out-1"]);
    assert.equal(server.runs.get("out-1"), 1);
  });

  it("waits at least the server's retry_after_ms before sending it again", async () => {
    const client = await open();
    const arrivals = [];
    server.onMessage = outFor("echo", 1, { retry_after_ms: 400 }, arrivals);
    assert.deepEqual(await client.call("echo", { n: 1 }), { echo: { n: 1 } });
    const [first, again] = arrivals;
    assert.ok(again - first >= 400, `resent after ${again - first} ms`);
  });

  it("rejects with a retryable UNAVAILABLE about the request once the deadline has passed", async () => {
    const client = await open({ unavailableDeadlineMs: 500 });
    server.onMessage = outFor("generate_report", 10_000);
    await assert.rejects(client.call("generate_report", { pages: 1 }, { id: "out-2" }), (error) => {
      assert.ok(error instanceof StreamerError);
      assert.equal(error.code, "UNAVAILABLE");
      assert.equal(error.retryable, true);
      assert.equal(error.requestId, "out-2");
      assert.equal(error.requestStatus, null, "nothing was stored");
      assert.deepEqual(error.details, OUTAGE);
      assert.match(error.reason, /gave up after \d+ refusals/);
      return true;
    });
    assert.ok(server.receivedActions("generate_report").length > 1, "it was sent again before giving up");
    assert.equal(server.runs.get("out-2"), undefined);
  });

  it("with a deadline of 0 gives the first UNAVAILABLE to the caller", async () => {
    const client = await open({ unavailableDeadlineMs: 0 });
    server.onMessage = outFor("echo", 1);
    await assert.rejects(client.call("echo", {}), { code: "UNAVAILABLE", retryable: true });
    assert.equal(server.receivedActions("echo").length, 1);
  });

  const systemActions = {
    status: (client, id) => client.status(id),
    subscribe: (client, id) => client.subscribe(id),
    unsubscribe: (client, id) => client.unsubscribe(id),
  };
  for (const [action, run] of Object.entries(systemActions)) {
    it(`sends a ${action} answered UNAVAILABLE again, and gives up after the deadline`, async () => {
      // A generated id: its acknowledgment needs no subscribe that the hook below could meet.
      const client = await open({ unavailableDeadlineMs: 300 });
      await client.call("generate_report", { pages: 1 });
      const [id] = server.runs.keys();
      server.onMessage = outFor(action, 1);
      await run(client, id);
      // A subscribe goes again under a new message id, so that a late answer to the first is not taken for it.
      const [first, again] = server.receivedActions(action).map(({ id, ...rest }) => rest);
      assert.deepEqual(again, first);

      server.onMessage = outFor(action, 10_000);
      await assert.rejects(run(client, id), { code: "UNAVAILABLE", requestId: id });
    });
  }

  it("sends a cancel answered UNAVAILABLE again, and gives up after the deadline", async () => {
    // A running request: a finished one is answered by the subscribe that cancel sends first.
    const client = await open({ unavailableDeadlineMs: 300 });
    server.holdReports = new Promise(() => {});
    let acknowledged;
    const seen = new Promise((resolve) => {
      acknowledged = resolve;
    });
    client.call("generate_report", { pages: 1 }, { id: "running-1", onAcknowledged: acknowledged }).catch(() => {});
    await seen;
    server.onMessage = outFor("cancel", 10_000);
    await assert.rejects(client.cancel("running-1"), { code: "UNAVAILABLE", requestId: "running-1" });
    const cancels = server.receivedActions("cancel");
    assert.ok(cancels.length > 1, "sent again before giving up");
    assert.ok(cancels.every((message) => message.id === cancels[0].id), "the same message each time");
  });

  it("rejects a call nothing answers with NO_ANSWER after the answer timeout, and the connection goes on", async () => {
    const client = await open({ answerTimeoutMs: 300 });
    server.onMessage = swallowing("echo");
    await assert.rejects(client.call("echo", {}, { id: "silent-1" }), (error) => {
      assert.equal(error.code, "NO_ANSWER");
      assert.equal(error.retryable, true);
      assert.equal(error.requestId, "silent-1");
      return true;
    });
    assert.equal((await client.call("generate_report", { pages: 1 })).pages, 1);
  });

  it("rejects an unanswered status with NO_ANSWER", async () => {
    const client = await open({ answerTimeoutMs: 300 });
    await client.call("generate_report", { pages: 1 }, { id: "done-1" });
    server.onMessage = swallowing("status");
    await assert.rejects(client.status("done-1"), { code: "NO_ANSWER", requestId: "done-1" });
  });

  const unmatched = {
    "an error without request_id": [{ type: "error", error: { code: "INTERNAL_ERROR", message: "store down" } }, /store down/],
    "API Gateway's own Internal server error": [{ message: "Internal server error", connectionId: "c-1", requestId: "g-1" }, /Internal server error/],
  };
  for (const [name, [frame, said]] of Object.entries(unmatched)) {
    it(`ends a call answered by ${name} after the answer timeout, quoting it`, async () => {
      const client = await open({ answerTimeoutMs: 300 });
      server.onMessage = (socket, message) => {
        if (message.action !== "echo") return false;
        socket.send(JSON.stringify(frame));
        return true;
      };
      await assert.rejects(client.call("echo", {}), (error) => {
        assert.equal(error.code, "NO_ANSWER");
        assert.match(error.reason, said);
        return true;
      });
    });
  }

  it("lets an acknowledged request run longer than the answer timeout", async () => {
    const client = await open({ answerTimeoutMs: 200 });
    let release;
    server.holdReports = new Promise((resolve) => {
      release = resolve;
    });
    let acknowledged;
    const seen = new Promise((resolve) => {
      acknowledged = resolve;
    });
    const running = client.call("generate_report", { pages: 1 }, { onAcknowledged: acknowledged });
    await seen;
    await new Promise((resolve) => setTimeout(resolve, 500));
    release();
    assert.equal((await running).pages, 1);
  });

  it("refuses a negative deadline or a non-positive answer timeout", () => {
    assert.throws(() => new StreamerClient(server.url, "token", { WebSocket, unavailableDeadlineMs: -1 }), RangeError);
    assert.throws(() => new StreamerClient(server.url, "token", { WebSocket, answerTimeoutMs: 0 }), RangeError);
  });
});

describe("a connection that goes silent", () => {
  let server;

  beforeEach(async () => {
    server = await startFakeServer();
  });

  afterEach(async () => {
    await server.close();
  });

  it("is found dead by the keepalive, replaced, and the held request still completes once", async () => {
    const states = [];
    const sockets = [];
    const client = new StreamerClient(server.url, "token", {
      createWebSocket: (url) => {
        const socket = new WebSocket(url, { perMessageDeflate: false });
        sockets.push(socket);
        return socket;
      },
      ...FAST,
      pingIntervalMs: 100,
      pongTimeoutMs: 300,
    });
    client.on("statechange", (change) => states.push(change.current));
    await client.connect();
    let release;
    server.holdReports = new Promise((resolve) => {
      release = resolve;
    });
    const outcomes = [];
    const done = client.call("generate_report", { pages: 3 }, { id: "silent-1" }).then((result) => outcomes.push(result));
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The first socket goes quiet as a half-open TCP connection would: nothing
    // it sends is answered, and it is never closed by the server.
    const [first] = server.connections;
    server.onMessage = (socket) => socket === first;
    await new Promise((resolve) => {
      const poll = setInterval(() => {
        if (sockets.length >= 2 && client.state === "connected") {
          clearInterval(poll);
          resolve();
        }
      }, 20);
    });
    assert.ok(states.includes("disconnected"), `dropped: ${states}`);
    release();
    await done;
    assert.deepEqual(outcomes, [{ pages: 3, report_id: "rep-silent-1" }]);
    assert.equal(server.runs.get("silent-1"), 1, "one run");
    client.close();
  });
});
