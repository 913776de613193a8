// client/js/streamer.js against the real local stack (python -m local), over real sockets.
// Node 20 has no global WebSocket: these use the ws package's.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import WebSocket from "ws";
import { ConnectionError, StreamerClient, StreamerError, newRequestId } from "../../client/js/streamer.js";
import { eventually, startStack, uniqueUser } from "./stack.js";

const FAST = { initialDelayMs: 50, maxDelayMs: 300 };

/** A client of a fresh user (so the test's connections are its own), with the sockets it opened. */
async function connectClient(stack, options = {}) {
  const user = options.user ?? uniqueUser();
  const sockets = [];
  const states = [];
  const client = new StreamerClient(stack.ready.websocket_url, options.token ?? stack.token(user), {
    createWebSocket: (url) => {
      const socket = new WebSocket(url, { perMessageDeflate: false });
      sockets.push(socket);
      return socket;
    },
    ...FAST,
    onStateChange: (state) => states.push(state),
    ...options.clientOptions,
  });
  await client.connect();
  return { client, user, sockets, states };
}

function recordProgress() {
  const seen = [];
  return { seen, onProgress: (progress) => seen.push(progress) };
}

function assertInOrder(seen) {
  for (let i = 1; i < seen.length; i += 1) {
    assert.ok(seen[i].seq > seen[i - 1].seq, `seq ${seen[i].seq} after ${seen[i - 1].seq}`);
    assert.ok(seen[i].percentage >= seen[i - 1].percentage, "percentages never go back");
  }
}

describe("StreamerClient against python -m local", () => {
  let stack;
  const clients = [];
  const open = async (options) => {
    const connected = await connectClient(stack, options);
    clients.push(connected.client);
    return connected;
  };

  before(async () => {
    stack = await startStack();
  });

  after(async () => {
    for (const client of clients) client.close();
    const code = await stack.stop();
    assert.equal(code, 0, `python -m local exited ${code}:\n${stack.log()}`);
  });

  it("answers a sync action with its data", async () => {
    const { client } = await open();
    assert.deepEqual(await client.call("echo", { hello: "world", n: [1, 2] }), { echo: { hello: "world", n: [1, 2] } });
    assert.ok((await client.ping()) >= 0);
  });

  it("runs an async action: acknowledgment, progress in seq order, then the result", async () => {
    const { client } = await open();
    const events = [];
    const result = await client.call(
      "generate_report",
      { pages: 8, page_ms: 60 },
      {
        onAcknowledged: (ack) => events.push(["ack", ack.estimatedDurationMs]),
        onProgress: (p) => events.push(["progress", p.seq, p.percentage, p.message]),
      },
    );
    assert.equal(result.pages, 8);
    assert.match(result.report_id, /^rpt-/);
    assert.deepEqual(events[0], ["ack", 30000]);
    const progress = events.slice(1);
    assert.ok(progress.length >= 2, `some progress: ${JSON.stringify(progress)}`);
    assert.ok(progress.every((e) => e[0] === "progress"));
    assertInOrder(progress.map(([, seq, percentage]) => ({ seq, percentage })));
    assert.equal(progress[0][1], 1, "seq starts at 1");
    assert.match(progress.at(-1)[3], /^page \d+ of 8$/);
  });

  it("send() answers a sync action and refuses to wait for an async one (NOT_SYNCHRONOUS)", async () => {
    const { client } = await open();
    assert.deepEqual(await client.send("echo", { quick: true }), { echo: { quick: true } });
    const id = newRequestId();
    await assert.rejects(client.send("generate_report", { pages: 1, page_ms: 0 }, { id }), { code: "NOT_SYNCHRONOUS", requestId: id });
    // It was accepted and runs: its result is there to subscribe to.
    assert.equal((await client.subscribe(id)).pages, 1);
  });

  it("runs many requests at once on one connection", async () => {
    const { client } = await open();
    const [a, b, c] = await Promise.all([
      client.call("generate_report", { pages: 2, page_ms: 20 }),
      client.call("echo", { x: 1 }),
      client.call("generate_report", { pages: 3, page_ms: 20 }),
    ]);
    assert.equal(a.pages, 2);
    assert.deepEqual(b, { echo: { x: 1 } });
    assert.equal(c.pages, 3);
  });

  it("rejects a bad payload with VALIDATION_ERROR naming the fields", async () => {
    const { client } = await open();
    const id = newRequestId();
    await assert.rejects(client.call("generate_report", { pages: 0, page_ms: "slow" }, { id }), (error) => {
      assert.ok(error instanceof StreamerError);
      assert.equal(error.code, "VALIDATION_ERROR");
      assert.equal(error.retryable, false);
      assert.equal(error.requestId, id);
      assert.equal(error.requestStatus, null, "refused: nothing was stored");
      assert.deepEqual(Object.keys(error.details.fields).sort(), ["page_ms", "pages"]);
      return true;
    });
    await assert.rejects(client.status(id), { code: "NOT_FOUND" });
  });

  it("rejects with the protocol's codes: INVALID_ACTION, NOT_FOUND, CONFLICT, PROCESSING_FAILED", async () => {
    const { client } = await open();
    await assert.rejects(client.call("no_such_action", {}), { name: "StreamerError", code: "INVALID_ACTION" });
    await assert.rejects(client.status("js-unknown"), { code: "NOT_FOUND", requestId: "js-unknown" });
    await assert.rejects(client.subscribe("js-unknown"), { code: "NOT_FOUND" });
    await assert.rejects(client.cancel("js-unknown"), { code: "NOT_FOUND" });

    const id = newRequestId();
    await client.call("generate_report", { pages: 1, page_ms: 0 }, { id });
    await assert.rejects(client.call("generate_report", { pages: 2, page_ms: 0 }, { id }), { code: "CONFLICT", retryable: false });

    await assert.rejects(client.call("generate_report", { pages: 4, page_ms: 10, fail_at_page: 2 }), (error) => {
      assert.equal(error.code, "PROCESSING_FAILED");
      assert.equal(error.requestStatus, "FAILED");
      assert.deepEqual(error.details, { page: 2 });
      assert.match(error.reason, /page 2 could not be rendered/);
      return true;
    });
  });

  it("refuses what the protocol forbids before sending anything", async () => {
    const { client } = await open();
    await assert.rejects(client.call("bad action!", {}), TypeError);
    await assert.rejects(client.call("echo", {}, { id: "has spaces" }), TypeError);
    await assert.rejects(client.call("echo", { x: Number.NaN }), TypeError);
    await assert.rejects(client.call("echo", { blob: "x".repeat(130 * 1024) }), { code: "PAYLOAD_TOO_LARGE" });
    // The connection is still fine.
    assert.deepEqual(await client.call("echo", {}), { echo: {} });
  });

  it("repeats a request idempotently: the same id runs once and answers the same result", async () => {
    const { client, user } = await open();
    const id = newRequestId();
    const payload = { pages: 3, page_ms: 30 };
    const first = await client.call("generate_report", payload, { id });
    const again = await client.call("generate_report", payload, { id });
    assert.deepEqual(again, first);
    // And from another connection of the same user (it subscribes after the repeated acknowledgment).
    const { client: other } = await open({ user });
    assert.deepEqual(await other.call("generate_report", payload, { id }), first);
  });

  it("follows a request from another connection with subscribe, and reads it with status", async () => {
    const { client, user } = await open();
    const { client: watcher } = await open({ user });
    const id = newRequestId();
    const owner = recordProgress();
    // Long enough for the subscriber to get live updates (the processor reads subscribers now and then).
    const running = client.call("generate_report", { pages: 20, page_ms: 100 }, { id, onProgress: owner.onProgress });
    const { seen, onProgress } = recordProgress();
    await eventually(() => owner.seen.length > 0);
    const followed = await watcher.subscribe(id, { onProgress });
    const result = await running;
    assert.deepEqual(followed, result);
    assert.ok(seen.length >= 1, "the subscriber saw progress");
    assertInOrder(seen);
    const snapshot = await watcher.status(id);
    assert.equal(snapshot.status, "COMPLETED");
    assert.equal(snapshot.terminal, true);
    assert.deepEqual(snapshot.result, result);
    // A finished request's subscribe answers at once with its complete.
    assert.deepEqual(await watcher.subscribe(id), result);
  });

  it("cancels a running request: cancel resolves CANCELLED and the call rejects CANCELLED", async () => {
    const { client } = await open();
    const id = newRequestId();
    const { seen, onProgress } = recordProgress();
    const running = client.call("generate_report", { pages: 200, page_ms: 50 }, { id, onProgress });
    const outcome = running.catch((error) => error);
    await eventually(() => seen.length > 0);
    const cancelled = await client.cancel(id);
    assert.equal(cancelled.status, "CANCELLED");
    const error = await outcome;
    assert.equal(error.code, "CANCELLED");
    assert.equal(error.requestStatus, "CANCELLED");
    assert.equal((await client.status(id)).status, "CANCELLED");
    // Cancelling an ended request changes nothing and says how it ended.
    assert.equal((await client.cancel(id)).status, "CANCELLED");
  });

  it("reconnects after the server drops the socket (DeleteConnection) and resumes the request by seq", async () => {
    const { client, user, sockets, states } = await open();
    const [connectionId] = await stack.connectionIds(user);
    assert.ok(connectionId, "the connection is in the table");
    const { seen, onProgress } = recordProgress();
    const id = newRequestId();
    const running = client.call("generate_report", { pages: 12, page_ms: 100 }, { id, onProgress });
    await eventually(() => seen.length >= 2);
    assert.equal(await stack.dropConnection(connectionId), 204);
    const result = await running;
    assert.equal(result.pages, 12);
    assert.equal(sockets.length, 2, "one reconnect");
    assert.deepEqual(states.slice(0, 5), ["connecting", "connected", "disconnected", "connecting", "connected"]);
    assertInOrder(seen);
    assert.ok(seen.at(-1).seq > 2, "progress went on after the reconnect");
    // The same run, not a second one: its status has the same result.
    assert.deepEqual((await client.status(id)).result, result);
  });

  it("reconnects after a client-side drop and resends what was not yet answered", async () => {
    const { client, sockets, states } = await open();
    sockets[0].terminate();
    // Asked while the connection is down: sent once the new one is open.
    const echoed = client.call("echo", { while: "down" });
    const status = client.ping();
    assert.deepEqual(await echoed, { echo: { while: "down" } });
    assert.ok((await status) >= 0);
    assert.equal(sockets.length, 2);
    assert.ok(states.includes("disconnected"));
    assert.equal(client.state, "connected");
  });

  it("resumes a request whose acknowledgment was lost in the drop, without a second run", async () => {
    const { client, sockets } = await open();
    const { seen, onProgress } = recordProgress();
    const id = newRequestId();
    const running = client.call("generate_report", { pages: 6, page_ms: 50 }, { id, onProgress });
    // The request is on the wire; the socket goes before its answer can be read.
    sockets[0].terminate();
    const result = await running;
    assert.equal(result.pages, 6);
    assertInOrder(seen);
    assert.deepEqual((await client.status(id)).result, result);
  });

  it("refuses a bad token at the handshake with UNAUTHORIZED, not retried", async () => {
    const client = new StreamerClient(stack.ready.websocket_url, "not-a-jwt", { WebSocket });
    await assert.rejects(client.connect(), (error) => {
      assert.ok(error instanceof ConnectionError);
      assert.equal(error.code, "UNAUTHORIZED");
      assert.equal(error.statusCode, 401);
      assert.equal(error.retryable, false);
      return true;
    });
    await assert.rejects(client.call("echo", {}), { code: "UNAUTHORIZED" });
  });

  it("fails fast when nothing listens", async () => {
    const client = new StreamerClient("ws://127.0.0.1:9/", "token", { WebSocket, openTimeoutMs: 2000 });
    await assert.rejects(client.connect(), { code: "CONNECTION_FAILED", retryable: true });
  });

  it("rejects everything awaited with CONNECTION_FAILED when closed", async () => {
    const { client } = await open();
    const running = client.call("generate_report", { pages: 50, page_ms: 50 });
    client.close();
    await assert.rejects(running, { code: "CONNECTION_FAILED" });
    await assert.rejects(client.call("echo", {}), { code: "CONNECTION_FAILED" });
  });
});

describe("the connection's rate limit", () => {
  // One router environment: each environment keeps its own view of a connection's bucket,
  // and messages spread over N of them may take up to N - 1 more bursts (docs/security.md).
  // A rate of 5 a second (a token every 200 ms): one environment answers messages one at a
  // time, and at 20 a second a loaded machine answering one every 50 ms or slower would
  // never meet the limit.
  const RATE_PER_S = 5;
  const BURST = 20;
  let stack;
  const clients = [];
  const open = async (options) => {
    const connected = await connectClient(stack, options);
    clients.push(connected.client);
    return connected;
  };

  before(async () => {
    const given = { STREAMER_RATE_LIMIT_PER_S: String(RATE_PER_S), STREAMER_RATE_LIMIT_BURST: String(BURST) };
    const saved = Object.fromEntries(Object.keys(given).map((name) => [name, process.env[name]]));
    Object.assign(process.env, given);
    try {
      stack = await startStack("--function-concurrency", "1");
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });

  after(async () => {
    for (const client of clients) client.close();
    const code = await stack.stop();
    assert.equal(code, 0, `python -m local exited ${code}:\n${stack.log()}`);
  });

  it("retries what the connection's rate limit refused, and says RATE_LIMITED when told not to", async () => {
    // Enough resends for the 10 over the burst to get their tokens back, one each 200 ms.
    const { client } = await open({ clientOptions: { rateLimitRetries: 40 } });
    const burst = Array.from({ length: 30 }, (_, i) => client.call("echo", { i }));
    const answers = await Promise.all(burst);
    assert.deepEqual(answers.map((answer) => answer.echo.i), Array.from({ length: 30 }, (_, i) => i));

    const { client: strict } = await open({ clientOptions: { rateLimitRetries: 0 } });
    const started = Date.now();
    const outcomes = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => strict.call("echo", { i })));
    const elapsed = Date.now() - started;
    const refused = outcomes.filter((outcome) => outcome.status === "rejected").map((outcome) => outcome.reason);
    // A bucket of 20 that gets a token back every 200 ms admits no more than that.
    const admitted = outcomes.length - refused.length;
    const interval = 1000 / RATE_PER_S;
    assert.ok(refused.length >= 1 && admitted <= BURST + Math.ceil(elapsed / interval), `${admitted} admitted in ${elapsed} ms`);
    for (const error of refused) {
      assert.equal(error.code, "RATE_LIMITED");
      assert.equal(error.retryable, true);
      assert.equal(error.details.limit_per_second, RATE_PER_S);
      assert.equal(error.details.burst, BURST);
      assert.ok(error.details.retry_after_ms > 0 && error.details.retry_after_ms <= interval, `${error.details.retry_after_ms}`);
    }
  });
});

describe("heartbeat and giving up", () => {
  it("keeps a connection past the idle timeout with pings, and gives up with CONNECTION_LOST when told to", async () => {
    // A short grace: the stack stops with a job running, and need not wait for it.
    const stack = await startStack("--idle-timeout", "1", "--shutdown-grace", "0.5");
    let stopped = false;
    try {
      const { client, sockets, states } = await connectClient(stack, {
        clientOptions: {
          pingIntervalMs: 300,
          ...{ initialDelayMs: 40, maxDelayMs: 100, suspendAfterMs: 100, suspendedRetryMs: 100, maxReconnectAttempts: 6 },
          random: () => 1,
        },
      });
      await new Promise((resolve) => setTimeout(resolve, 2500));
      assert.equal(sockets.length, 1, "no reconnect: the pings kept it open");
      assert.deepEqual(states, ["connecting", "connected"]);
      assert.deepEqual(await client.call("echo", { alive: true }), { echo: { alive: true } });

      const pending = client.call("generate_report", { pages: 500, page_ms: 100 });
      const outcome = pending.then(
        () => assert.fail("the call cannot succeed"),
        (error) => error,
      );
      assert.equal(await stack.stop(), 0);
      stopped = true;
      await assert.rejects(outcome.then((error) => Promise.reject(error)), (error) => {
        assert.equal(error.code, "CONNECTION_LOST");
        assert.ok(error instanceof ConnectionError);
        return true;
      });
      assert.equal(client.state, "failed");
      assert.ok(states.includes("suspended"), "suspended once the backoff's attempts were spent");
    } finally {
      if (!stopped) await stack.stop();
    }
  });

  it("without a heartbeat, the gateway's idle timeout drops it and the client reconnects", async () => {
    const stack = await startStack("--idle-timeout", "1");
    try {
      const { client, sockets, states } = await connectClient(stack, { clientOptions: { pingIntervalMs: null } });
      await eventually(() => sockets.length === 2 && client.state === "connected", Boolean, 5000);
      assert.ok(states.includes("disconnected"));
      assert.deepEqual(await client.call("echo", {}), { echo: {} });
      client.close();
    } finally {
      await stack.stop();
    }
  });
});
