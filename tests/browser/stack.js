// `python -m local` for the Node tests, as tests/e2e/conftest.py starts it for pytest:
// free ports, wait for the ready file (never a fixed sleep), SIGTERM at the end.

import { spawn } from "node:child_process";
import { createPrivateKey, randomBytes, sign } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

function python() {
  const venv = join(ROOT, ".venv", "bin", "python");
  return process.env.STREAMER_PYTHON || (existsSync(venv) ? venv : "python3");
}

/** Start a stack; resolves with `{ready, logFile, stop(), token(sub, tenant), ...}`. */
export async function startStack(...args) {
  const directory = mkdtempSync(join(tmpdir(), "streamer-js-"));
  const readyFile = join(directory, "ready.json");
  const logFile = join(directory, "stack.log");
  const log = openSync(logFile, "w");
  const engine = (process.env.STREAMER_TEST_DYNAMODB || "").trim();
  const child = spawn(
    python(),
    ["-m", "local", "--port", "0", "--ready-file", readyFile, ...(engine ? ["--dynamodb", engine] : []), ...args],
    { cwd: ROOT, stdio: ["ignore", log, log] },
  );
  let exitCode = null;
  const exited = new Promise((done) => child.on("exit", (code, signal) => done((exitCode = code ?? signal))));
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!existsSync(readyFile)) {
    if (exitCode !== null) throw new Error(`python -m local exited ${exitCode} before it was ready:\n${readFileSync(logFile, "utf8")}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`python -m local was not ready in time:\n${readFileSync(logFile, "utf8")}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const ready = JSON.parse(readFileSync(readyFile, "utf8"));

  return {
    ready,
    logFile,
    log: () => readFileSync(logFile, "utf8"),
    /** SIGTERM, and the exit code (0 expected). */
    async stop() {
      if (exitCode === null) child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    /** A token signed with the stack's dev key (ES256), as `python -m local token` makes it. */
    token(sub, tenant = "js-tenant", ttlS = 3600) {
      const now = Math.floor(Date.now() / 1000);
      const claims = { sub, tenant_id: tenant, iss: ready.jwt_issuer, aud: ready.jwt_audience, iat: Math.min(now, now + ttlS), exp: now + ttlS };
      const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
      const input = `${part({ alg: "ES256", typ: "JWT" })}.${part(claims)}`;
      const key = createPrivateKey(readFileSync(ready.dev_key_file));
      const signature = sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" });
      return `${input}.${signature.toString("base64url")}`;
    },
    /** The connection ids of a user, read from the connections table (as the e2e tests do). */
    async connectionIds(userId) {
      const items = await dynamodbScan(ready, ready.tables.connections);
      return items.filter((item) => item.user_id?.S === userId).map((item) => item.connection_id.S);
    },
    /** DeleteConnection on the management API: the gateway closes that socket. */
    async dropConnection(connectionId) {
      const response = await fetch(`${ready.management_url}/@connections/${encodeURIComponent(connectionId)}`, { method: "DELETE" });
      return response.status;
    },
  };
}

/** A unique user id, so tests never see each other's connections or requests. */
export function uniqueUser(prefix = "js") {
  return `${prefix}-${randomBytes(6).toString("hex")}`;
}

// The local DynamoDB (moto or DynamoDB Local) checks no signature; the header only has to parse.
async function dynamodbScan(ready, table) {
  const items = [];
  let start;
  do {
    const response = await fetch(ready.dynamodb_endpoint, {
      method: "POST",
      headers: {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.Scan",
        Authorization: `AWS4-HMAC-SHA256 Credential=local/20240101/${ready.region}/dynamodb/aws4_request, SignedHeaders=host, Signature=0`,
      },
      body: JSON.stringify({ TableName: table, ConsistentRead: true, ...(start ? { ExclusiveStartKey: start } : {}) }),
    });
    if (!response.ok) throw new Error(`Scan ${table}: HTTP ${response.status} ${await response.text()}`);
    const page = await response.json();
    items.push(...page.Items);
    start = page.LastEvaluatedKey;
  } while (start);
  return items;
}

/** Poll `probe` until `accept` holds (default: truthy); throws after `timeoutMs`. */
export async function eventually(probe, accept = Boolean, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (accept(last)) return last;
    if (Date.now() > deadline) throw new Error(`not in time; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function artifactsDir() {
  const directory = join(ROOT, "test-artifacts");
  mkdirSync(directory, { recursive: true });
  return directory;
}
