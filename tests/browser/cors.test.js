// CORS of the HTTP API in a real browser: a page served on another origin calls POST /requests.
// The stack allows one origin (STREAMER_CORS, the JSON of the Pulumi config `streamer:cors`);
// a page from that origin gets its answer, a page from any other origin is refused by
// Chromium itself (the preflight carries no Access-Control-Allow-Origin for it), so the
// request never runs.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { launchChromium } from "./browser.js";
import { startStack, uniqueUser } from "./stack.js";

const PAGE = "<!doctype html><title>another origin</title><p>a page of another site</p>";

/** A one-page site on its own port: a different origin from the stack's HTTP API. */
async function site() {
  const server = createServer((request, response) => {
    response.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    response.end(PAGE);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** In the page: POST /requests with a bearer token and a JSON body (so a preflight first). */
async function postFrom(page, url, token, body) {
  return page.evaluate(
    async ({ url, token, body }) => {
      try {
        const response = await fetch(`${url}requests`, {
          method: "POST",
          headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
          body: JSON.stringify(body),
        });
        return { status: response.status, body: await response.json() };
      } catch (error) {
        return { refused: `${error.name}: ${error.message}` };
      }
    },
    { url, token, body },
  );
}

describe("CORS of the HTTP API", () => {
  let allowed;
  let other;
  let stack;
  let browser;
  let page;

  before(async () => {
    allowed = await site();
    other = await site();
    process.env.STREAMER_CORS = JSON.stringify({ allowOrigins: [allowed.origin] });
    stack = await startStack();
    browser = await launchChromium();
    page = browser.context.pages()[0] ?? (await browser.context.newPage());
  });

  after(async () => {
    delete process.env.STREAMER_CORS;
    if (browser) await browser.close();
    if (stack) assert.equal(await stack.stop(), 0, stack.log());
    await allowed?.close();
    await other?.close();
  });

  it("serves POST /requests to a page of the allowed origin", async () => {
    await page.goto(`${allowed.origin}/`);
    assert.notEqual(new URL(stack.ready.http_url).origin, allowed.origin);

    const answer = await postFrom(page, stack.ready.http_url, stack.token(uniqueUser("cors")), {
      action: "echo",
      payload: { from: "another origin" },
    });

    assert.equal(answer.status, 200, JSON.stringify(answer));
    assert.equal(answer.body.type, "response");
    assert.deepEqual(answer.body.data, { echo: { from: "another origin" } });
  });

  it("refuses a page of any other origin, and the request never runs", async () => {
    await page.goto(`${other.origin}/`);
    const user = uniqueUser("cors");
    const token = stack.token(user);
    const id = `cors-${user}`;

    const answer = await postFrom(page, stack.ready.http_url, token, {
      action: "generate_report",
      id,
      payload: { pages: 1, page_ms: 0 },
    });

    // Chromium refuses the cross-origin fetch: a TypeError, no status, no body.
    assert.match(answer.refused ?? "", /^TypeError: Failed to fetch/, JSON.stringify(answer));
    // The preflight stopped it: the request was never started.
    const read = await fetch(`${stack.ready.http_url}requests/${encodeURIComponent(id)}`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    assert.equal(read.status, 404);
  });
});
