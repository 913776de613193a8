// The JS client's long life against python -m local: token providers and renewal,
// rotation before the gateway's maximum connection duration, topics across
// reconnects, and a stack that goes away for a while and comes back.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import WebSocket from "ws";
import { StreamerClient, newRequestId } from "../../client/js/streamer.js";
import { startProxy } from "./proxy.js";
import { eventually, startStack, uniqueUser } from "./stack.js";

const FAST = { initialDelayMs: 50, maxDelayMs: 300 };

/** A client with a token provider; records the sockets, states, rotations and the provider's calls. */
async function connectClient(stack, { user = uniqueUser(), tokens = null, options = {} } = {}) {
  const sockets = [];
  const states = [];
  const rotations = [];
  const asked = [];
  const provider = async (context) => {
    asked.push(context.reason);
    return tokens ? tokens(asked.length, context) : stack.token(user);
  };
  const client = new StreamerClient(stack.ready.websocket_url, provider, {
    createWebSocket: (url) => {
      const socket = new WebSocket(url, { perMessageDeflate: false });
      sockets.push(socket);
      return socket;
    },
    ...FAST,
    ...options,
  });
  client.on("statechange", (change) => states.push(change.current));
  client.on("rotated", (info) => rotations.push(info.reason));
  await client.connect();
  return { client, user, sockets, states, rotations, asked };
}

/** Everything a call reports: progress seqs and how often it settled. */
function track(client, action, payload, id = newRequestId()) {
  const seen = [];
  let settled = 0;
  const done = client.call(action, payload, { id, onProgress: (p) => seen.push(p.seq) }).finally(() => {
    settled += 1;
  });
  return { id, seen, done, settledCount: () => settled };
}

function assertStrictlyIncreasing(seqs) {
  for (let i = 1; i < seqs.length; i += 1) assert.ok(seqs[i] > seqs[i - 1], `seq ${seqs[i]} after ${seqs[i - 1]}: ${seqs}`);
}

async function publish(stack, body) {
  const response = await fetch(stack.ready.sns_ingress_url, { method: "POST", body: JSON.stringify(body) });
  assert.equal(response.status, 200, await response.clone().text());
  return response.json();
}

describe("token providers and rotation", () => {
  let stack;
  const clients = [];

  before(async () => {
    // The gateway closes every connection after 4 s here, as AWS does after 2 hours.
    stack = await startStack("--max-duration", "4");
  });

  after(async () => {
    for (const client of clients) client.close();
    assert.equal(await stack.stop(), 0, stack.log());
  });

  it("asks the provider for a fresh token before each connect, and a new one when the handshake is refused with 401", async () => {
    const user = uniqueUser();
    // The first token is refused (401); the provider's next one is good.
    const { client, asked, sockets } = await connectClient(stack, { user, tokens: (n) => (n === 1 ? "expired-or-bad" : stack.token(user)) });
    clients.push(client);
    assert.deepEqual(asked, ["connect", "connect"], "one new token after the 401");
    assert.equal(sockets.length, 2);
    assert.deepEqual(await client.call("echo", { ok: 1 }), { echo: { ok: 1 } });
    const [connectionId] = await stack.connectionIds(user);
    assert.equal(await stack.dropConnection(connectionId), 204);
    await eventually(() => asked.length === 3 && client.state === "connected");
    assert.equal(asked[2], "reconnect", "a fresh token for the reconnect");
  });

  it("rotates before the gateway's maximum connection duration: new connection first, no progress or complete lost or repeated", async () => {
    const { client, states, rotations, asked } = await connectClient(stack, {
      options: { maxConnectionMs: 4000, rotateBeforeMs: 1500 },
    });
    clients.push(client);
    // About 9 s of work over connections that live 4 s each.
    const job = track(client, "generate_report", { pages: 45, page_ms: 200 });
    const result = await job.done;
    assert.equal(result.pages, 45);
    assert.equal(job.settledCount(), 1);
    assert.ok(rotations.length >= 2, `rotated ${rotations.length} times`);
    assert.ok(!states.includes("disconnected"), `never dropped: ${states}`);
    assert.ok(asked.filter((reason) => reason === "rotate").length >= 2, "a fresh token for every rotation");
    assertStrictlyIncreasing(job.seen);
    assert.deepEqual((await client.status(job.id)).result, result);
  });

  it("renews a token that expires mid-request: the request's complete arrives exactly once", async () => {
    const user = uniqueUser();
    // Tokens valid for 3 s; the client rotates before each expires.
    const { client, rotations, asked } = await connectClient(stack, {
      user,
      tokens: () => stack.token(user, "js-tenant", 3),
      options: { maxConnectionMs: null, rotateBeforeMs: 1000 },
    });
    clients.push(client);
    const job = track(client, "generate_report", { pages: 30, page_ms: 200 });
    await eventually(() => rotations.includes("token"), Boolean, 5000);
    // The first token has expired by now: a drop is reconnected with a fresh one.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const [connectionId] = await stack.connectionIds(user);
    assert.equal(await stack.dropConnection(connectionId), 204);
    const result = await job.done;
    assert.equal(result.pages, 30);
    assert.equal(job.settledCount(), 1);
    assert.ok(asked.includes("reconnect"), `reconnected with a fresh token: ${asked}`);
    assertStrictlyIncreasing(job.seen);
  });

  it("fails for good when the token provider keeps failing", async () => {
    const user = uniqueUser();
    let failing = false;
    const { client, states } = await connectClient(stack, {
      user,
      tokens: () => {
        if (failing) throw new Error("identity provider down");
        return stack.token(user);
      },
      options: { maxTokenFailures: 3, maxConnectionMs: null },
    });
    const pending = client.call("generate_report", { pages: 200, page_ms: 100 }).catch((error) => error);
    failing = true;
    const [connectionId] = await stack.connectionIds(user);
    await stack.dropConnection(connectionId);
    const error = await pending;
    assert.equal(error.code, "TOKEN_FAILED");
    assert.equal(client.state, "failed");
    assert.deepEqual(states.slice(-1), ["failed"]);
  });
});

describe("topics", () => {
  let stack;
  const clients = [];

  before(async () => {
    stack = await startStack();
  });

  after(async () => {
    for (const client of clients) client.close();
    assert.equal(await stack.stop(), 0, stack.log());
  });

  it("delivers a topic's notifications, the retained one to a late subscriber, and keeps the topic across reconnects", async () => {
    const tenant = "js-tenant";
    const topic = `job-${newRequestId("t")}`;
    const { client, user, states } = await connectClient(stack);
    clients.push(client);
    const got = [];
    await client.subscribeTopic(topic, (n) => got.push(n));
    assert.deepEqual(client.topics, [topic]);
    await publish(stack, { tenant_id: tenant, topic, event: "stage.one", data: { n: 1 } });
    await eventually(() => got.length === 1);
    assert.deepEqual([got[0].topic, got[0].event, got[0].data], [topic, "stage.one", { n: 1 }]);

    // A late subscriber gets the retained notification as its answer.
    const { client: late } = await connectClient(stack);
    clients.push(late);
    const lateGot = [];
    await late.subscribeTopic(topic, (n) => lateGot.push(n));
    assert.deepEqual(lateGot.map((n) => n.event), ["stage.one"]);

    // The gateway drops the first client; it reconnects and subscribes again,
    // without handing the retained notification over a second time.
    const [connectionId] = await stack.connectionIds(user);
    assert.equal(await stack.dropConnection(connectionId), 204);
    await eventually(() => states.filter((s) => s === "connected").length === 2);
    await client.ping();
    await publish(stack, { tenant_id: tenant, topic, event: "stage.two", data: { n: 2 } });
    await eventually(() => got.length >= 2 && lateGot.length >= 2);
    assert.deepEqual(got.map((n) => n.event), ["stage.one", "stage.two"]);
    assert.deepEqual(lateGot.map((n) => n.event), ["stage.one", "stage.two"]);

    // Unsubscribed: no more, even after another reconnect.
    await client.unsubscribeTopic(topic);
    assert.deepEqual(client.topics, []);
    await publish(stack, { tenant_id: tenant, topic, event: "stage.three", data: { n: 3 } });
    await eventually(() => lateGot.length === 3);
    await client.ping();
    assert.deepEqual(got.map((n) => n.event), ["stage.one", "stage.two"]);
  });

  it("hands notifications for the user to the 'notification' event", async () => {
    const { client, user } = await connectClient(stack);
    clients.push(client);
    const got = [];
    client.on("notification", (n) => got.push(n));
    await publish(stack, { tenant_id: "js-tenant", user_id: user, event: "content_generated", data: { contentId: "c-42" } });
    await eventually(() => got.length === 1);
    assert.deepEqual(got[0], { type: "notification", event: "content_generated", data: { contentId: "c-42" }, timestamp: got[0].timestamp });
    assert.ok(Number.isInteger(got[0].timestamp));
  });

  it("refuses a topic name the protocol forbids before sending anything", async () => {
    const { client } = await connectClient(stack);
    clients.push(client);
    await assert.rejects(client.subscribeTopic("has spaces", () => {}), TypeError);
    assert.deepEqual(client.topics, []);
  });
});

describe("a network outage", () => {
  let stack;
  let proxy;

  before(async () => {
    stack = await startStack();
    proxy = await startProxy(stack.ready.websocket_url);
  });

  after(async () => {
    await proxy.close();
    assert.equal(await stack.stop(), 0, stack.log());
  });

  it("goes suspended during a long outage, never gives up, and gets every complete once the network is back", async () => {
    const user = uniqueUser();
    const states = [];
    const client = new StreamerClient(proxy.url, async () => stack.token(user), {
      WebSocket,
      ...{ initialDelayMs: 20, maxDelayMs: 100, suspendAfterMs: 500, suspendedRetryMs: 300 },
      openTimeoutMs: 1000,
    });
    client.on("statechange", (change) => states.push(change.current));
    await client.connect();
    const jobs = [1, 2, 3].map((n) => track(client, "generate_report", { pages: 10 * n, page_ms: 100 }));
    await eventually(() => jobs.every((job) => job.seen.length > 0));

    await proxy.down();
    // Down until the client has been suspended a few retries long.
    await eventually(() => states.filter((s) => s === "suspended").length >= 3, Boolean, 20_000);
    assert.notEqual(client.state, "failed");
    await proxy.up();

    const results = await Promise.all(jobs.map((job) => job.done));
    assert.deepEqual(results.map((result) => result.pages), [10, 20, 30]);
    for (const job of jobs) {
      assert.equal(job.settledCount(), 1);
      assertStrictlyIncreasing(job.seen);
    }
    assert.equal(client.state, "connected");
    assert.deepEqual(await client.call("echo", { back: true }), { echo: { back: true } });
    client.close();
    assert.equal(client.state, "closed");
  });
});
