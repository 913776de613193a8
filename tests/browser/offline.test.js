// The JS client in Chromium (Debian's, driven by playwright-core) against python -m local:
// the browser goes offline mid-request and comes back; the client reconnects and resumes.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { launchChromium } from "./browser.js";
import { startStack } from "./stack.js";

const WAIT = { timeout: 30_000 };

describe("the client in Chromium, offline and online again", () => {
  let stack;
  let browser;
  let page;
  const pageErrors = [];

  before(async () => {
    stack = await startStack();
    browser = await launchChromium();
    page = browser.context.pages()[0] ?? (await browser.context.newPage());
    page.on("pageerror", (error) => pageErrors.push(String(error)));
    // The stack's page: same origin as /client/streamer.js and /dev-token.
    await page.goto(stack.ready.http_url);
    await page.waitForSelector("body[data-ready=true]", WAIT);
  });

  after(async () => {
    if (browser) await browser.close();
    if (stack) assert.equal(await stack.stop(), 0, stack.log());
  });

  it("pauses while offline, reconnects at once when online, and the request's complete arrives once", async () => {
    await page.evaluate(async () => {
      const { StreamerClient } = await import("/client/streamer.js");
      const { token, websocket_url: url } = await (await fetch("/dev-token")).json();
      const seen = { states: [], progress: [], settled: [], tokens: 0 };
      window.seen = seen;
      // A provider, as a page would write it: a fresh token before every connection.
      const client = new StreamerClient(url, async () => {
        seen.tokens += 1;
        return token;
      }, { pingIntervalMs: 60_000, pongTimeoutMs: 1000, initialDelayMs: 100, maxDelayMs: 500 });
      window.client = client;
      client.on("statechange", (change) => seen.states.push(change.current));
      await client.connect();
      client.call("generate_report", { pages: 40, page_ms: 150 }, { onProgress: (p) => seen.progress.push(p.seq) }).then(
        (result) => seen.settled.push({ ok: result.pages }),
        (error) => seen.settled.push({ error: error.code }),
      );
    });
    await page.waitForFunction(() => window.seen.progress.length >= 2, null, WAIT);

    await browser.context.setOffline(true);
    // The `offline` event checks the connection; it cannot answer, so the client
    // is disconnected, and waits (no retry timer) while the browser is offline.
    await page.waitForFunction(() => window.client.state === "disconnected", null, WAIT);
    const tokensWhileOffline = await page.evaluate(() => window.seen.tokens);
    await page.waitForTimeout(1500);
    assert.equal(await page.evaluate(() => window.seen.tokens), tokensWhileOffline, "no attempt while offline");
    assert.equal(await page.evaluate(() => window.client.state), "disconnected");

    await browser.context.setOffline(false);
    await page.waitForFunction(() => window.seen.settled.length === 1, null, WAIT);
    const seen = await page.evaluate(() => window.seen);
    assert.deepEqual(seen.settled, [{ ok: 40 }]);
    assert.equal(seen.states.at(-1), "connected");
    assert.deepEqual(seen.states.slice(0, 2), ["connecting", "connected"]);
    assert.ok(seen.states.includes("disconnected"));
    assert.ok(seen.tokens >= 2, "a fresh token for the reconnect");
    for (let i = 1; i < seen.progress.length; i += 1) assert.ok(seen.progress[i] > seen.progress[i - 1], `progress in seq order: ${seen.progress}`);
    // Still usable.
    assert.deepEqual(await page.evaluate(() => window.client.call("echo", { back: true })), { echo: { back: true } });
    await page.evaluate(() => window.client.close());
    assert.deepEqual(pageErrors, []);
  });
});
