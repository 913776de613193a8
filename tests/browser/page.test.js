// The demo page in a real browser (Debian's chromium, driven by playwright-core) against python -m local.

import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { launchChromium } from "./browser.js";
import { artifactsDir, startStack } from "./stack.js";

const WAIT = { timeout: 20_000 };

describe("the demo page", () => {
  let stack;
  let browser;
  let page;
  const pageErrors = [];

  before(async () => {
    stack = await startStack();
    browser = await launchChromium();
    page = browser.context.pages()[0] ?? (await browser.context.newPage());
    page.on("pageerror", (error) => pageErrors.push(String(error)));
    page.on("console", (message) => {
      if (message.type() === "error") pageErrors.push(message.text());
    });
    await page.goto(stack.ready.http_url);
    await page.waitForSelector("body[data-ready=true]", WAIT);
  });

  after(async () => {
    if (page) await page.screenshot({ path: join(artifactsDir(), "demo-page.png"), fullPage: true }).catch(() => {});
    if (browser) await browser.close();
    if (stack) assert.equal(await stack.stop(), 0, stack.log());
  });

  /** Fill the form, start a job, and return its request id (the page keeps it before sending). */
  async function startJob({ pages, pageMs, failAt = "" }) {
    const before = await storedIds();
    await page.fill("#pages", String(pages));
    await page.fill("#page-ms", String(pageMs));
    await page.fill("#fail-at-page", String(failAt));
    await page.click("#start");
    const ids = await storedIds();
    const added = ids.filter((id) => !before.includes(id));
    assert.equal(added.length, 1, "one job kept in localStorage");
    return added[0];
  }

  function storedIds() {
    return page.evaluate(() => JSON.parse(localStorage.getItem("streamer-demo:jobs") || "[]").map((job) => job.id));
  }

  const job = (id) => `#jobs li[data-request-id="${id}"]`;

  async function waitForStatus(id, status) {
    await page.waitForSelector(`${job(id)}[data-status="${status}"]`, WAIT);
  }

  async function barValue(id) {
    return Number(await page.getAttribute(`${job(id)} .bar`, "aria-valuenow"));
  }

  it("fills in the dev token and connects", async () => {
    assert.equal(await page.inputValue("#token"), stack.ready.dev_token);
    assert.equal(await page.inputValue("#url"), stack.ready.websocket_url);
    await page.waitForSelector('#connection[data-state="connected"]', WAIT);
    assert.equal(await page.textContent("#connection"), "connected");
  });

  it("runs two jobs: both bars reach 100 % with the result shown", async () => {
    const first = await startJob({ pages: 5, pageMs: 100 });
    const second = await startJob({ pages: 4, pageMs: 120 });
    for (const id of [first, second]) {
      await waitForStatus(id, "COMPLETED");
      assert.equal(await barValue(id), 100);
      assert.equal(await page.textContent(`${job(id)} .percent`), "100 %");
      const outcome = JSON.parse(await page.textContent(`${job(id)} .outcome`));
      assert.match(outcome.report_id, /^rpt-/);
      assert.ok(await page.isHidden(`${job(id)} .cancel`), "no cancel button on a finished job");
    }
    assert.equal(JSON.parse(await page.textContent(`${job(first)} .outcome`)).pages, 5);
    assert.equal(JSON.parse(await page.textContent(`${job(second)} .outcome`)).pages, 4);
  });

  it("cancels a long job with its Cancel button", async () => {
    const id = await startJob({ pages: 300, pageMs: 100 });
    await page.waitForFunction((selector) => Number(document.querySelector(selector)?.getAttribute("aria-valuenow")) >= 2, `${job(id)} .bar`, WAIT);
    await page.click(`${job(id)} .cancel`);
    await waitForStatus(id, "CANCELLED");
    assert.ok((await barValue(id)) < 100, "it stopped before the end");
    assert.match(await page.textContent(`${job(id)} .outcome`), /CANCELLED/);
    assert.equal(await page.textContent(`${job(id)} .badge`), "CANCELLED");
  });

  it("follows a job across a page reload to its end", async () => {
    const id = await startJob({ pages: 16, pageMs: 150 });
    await page.waitForFunction((selector) => Number(document.querySelector(selector)?.getAttribute("aria-valuenow")) >= 10, `${job(id)} .bar`, WAIT);
    const before = await barValue(id);
    assert.ok(before < 100, "reloaded mid-job");
    await page.reload();
    await page.waitForSelector("body[data-ready=true]", WAIT);
    // The card is back at once (from localStorage), then resumes with subscribe.
    assert.equal(await page.locator(job(id)).count(), 1);
    await waitForStatus(id, "COMPLETED");
    assert.equal(await barValue(id), 100);
    assert.equal(JSON.parse(await page.textContent(`${job(id)} .outcome`)).pages, 16);
  });

  it("shows a failed job's error", async () => {
    const id = await startJob({ pages: 3, pageMs: 50, failAt: 2 });
    await waitForStatus(id, "FAILED");
    const outcome = await page.textContent(`${job(id)} .outcome`);
    assert.match(outcome, /PROCESSING_FAILED: page 2 could not be rendered/);
  });

  it("shows the server's validation error for a bad payload, and starts no job", async () => {
    const cards = await page.locator("#jobs li").count();
    await page.fill("#pages", "0");
    await page.fill("#page-ms", "20000");
    await page.fill("#fail-at-page", "");
    const stored = await storedIds();
    await page.click("#start");
    await page.waitForSelector("#form-error:not([hidden])", WAIT);
    const text = await page.textContent("#form-error");
    assert.match(text, /VALIDATION_ERROR/);
    assert.match(text, /pages: must be from 1 to 1000/);
    assert.match(text, /page_ms: must be from 0 to 10000/);
    assert.equal(await page.locator("#jobs li").count(), cards, "no card for a refused request");
    await page.waitForFunction((count) => JSON.parse(localStorage.getItem("streamer-demo:jobs") || "[]").length === count, stored.length, WAIT);
  });

  it("logged no errors in the page", () => {
    assert.deepEqual(pageErrors, []);
  });
});
