// The demo page's files on the stack's HTTP port: content types, /dev-token, no way out of the folders.

import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ROOT, startStack } from "./stack.js";

/** A GET with the path sent exactly as written (fetch would normalise `..` away). */
function get(base, path, method = "GET") {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, path, method }, (response) => {
      const chunks = [];
      response.on("data", (chunk) => chunks.push(chunk));
      response.on("end", () => resolve({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("the demo page's files", () => {
  let stack;
  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    assert.equal(await stack.stop(), 0);
  });

  it("serves the page at / with the WebSocket URL filled in", async () => {
    const page = await get(stack.ready.http_url, "/");
    assert.equal(page.status, 200);
    assert.equal(page.headers["content-type"], "text/html; charset=utf-8");
    assert.ok(page.body.includes(`content="${stack.ready.websocket_url}"`));
    assert.ok(!page.body.includes("%%"), "no placeholder left");
    assert.ok(!page.body.includes(stack.ready.dev_token), "the token is not in the page");
    const head = await get(stack.ready.http_url, "/?x=1", "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.body, "");
  });

  it("serves the page's files and the client with their content types", async () => {
    const cases = [
      ["/demo.js", "text/javascript; charset=utf-8", join(ROOT, "local/static/demo.js")],
      ["/demo.css", "text/css; charset=utf-8", join(ROOT, "local/static/demo.css")],
      ["/client/streamer.js", "text/javascript; charset=utf-8", join(ROOT, "client/js/streamer.js")],
      ["/client/streamer.d.ts", "text/plain; charset=utf-8", join(ROOT, "client/js/streamer.d.ts")],
      ["/client/README.md", "text/markdown; charset=utf-8", join(ROOT, "client/js/README.md")],
    ];
    for (const [path, type, file] of cases) {
      const response = await get(stack.ready.http_url, path);
      assert.equal(response.status, 200, path);
      assert.equal(response.headers["content-type"], type, path);
      assert.equal(response.headers["x-content-type-options"], "nosniff", path);
      assert.equal(response.body, readFileSync(file, "utf8"), path);
    }
  });

  it("answers the dev token as JSON at /dev-token", async () => {
    const response = await get(stack.ready.http_url, "/dev-token");
    assert.equal(response.status, 200);
    assert.equal(response.headers["content-type"], "application/json");
    assert.equal(response.headers["cache-control"], "no-store");
    assert.deepEqual(JSON.parse(response.body), { token: stack.ready.dev_token, websocket_url: stack.ready.websocket_url });
  });

  it("serves nothing outside local/static and client/js", async () => {
    const paths = [
      "/../pyproject.toml",
      "/client/../pyproject.toml",
      "/client/../../pyproject.toml",
      "/client/%2e%2e/%2e%2e/pyproject.toml",
      "/client/..%2f..%2fpyproject.toml",
      "/%2e%2e%2flocal%2fstack.py",
      "/..%5c..%5cpyproject.toml",
      "/static_site.py",
      "/client/__init__.py",
      "/client/connection.py",
      "/client/js/streamer.js",
      "//etc/passwd",
      "/%2fetc%2fpasswd",
      "/.gitignore",
      "/client/.hidden.js",
      "/index",
      "/nothing.js",
      "/demo.js%00.html",
    ];
    for (const path of paths) {
      const response = await get(stack.ready.http_url, path);
      assert.equal(response.status, 404, `${path}: ${response.body.slice(0, 80)}`);
    }
    const post = await get(stack.ready.http_url, "/", "POST");
    assert.equal(post.status, 404);
  });

  it("still answers the management API on the same port", async () => {
    const response = await get(stack.ready.http_url, "/@connections/nobody");
    assert.equal(response.status, 410);
  });
});

describe("a stack trusting another key", () => {
  it("has no /dev-token, and the page still loads", async () => {
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const keyFile = join(tmpdir(), `streamer-js-key-${process.pid}.pem`);
    writeFileSync(keyFile, publicKey.export({ type: "spki", format: "pem" }));
    const stack = await startStack("--jwt-public-key", keyFile);
    try {
      assert.equal((await get(stack.ready.http_url, "/dev-token")).status, 404);
      assert.equal((await get(stack.ready.http_url, "/")).status, 200);
    } finally {
      assert.equal(await stack.stop(), 0);
    }
  });
});
