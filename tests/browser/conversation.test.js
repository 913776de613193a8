// Every conversation vector (client/conversation/vectors/*.json, the format in
// client/conversation/README.md) run through the JS client's sans-I/O machine,
// client/js/conversation.js; the Python client's suite runs the same files.
// vectors/ here holds the JS client's own, in the same format: its
// browser-life inputs (online, offline, visible), which Python has no use for,
// and nothing else: what both clients do is in the shared set.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Conversation } from "../../client/js/conversation.js";
import { ROOT } from "./stack.js";

const SHARED = join(ROOT, "client", "conversation", "vectors");
const JS_ONLY = join(ROOT, "tests", "browser", "vectors");

// What the JS machine says that the shared format has no place for: the
// acknowledgment callback (the Python client has none) and the logger's notes.
const JS_ONLY_EVENTS = new Set(["on_acknowledged"]);
// The vectors' options are snake_case; the machine's are camelCase.
const camel = (name) => name.replace(/_([a-z])/g, (_, letter) => letter.toUpperCase());

/** A machine set up as the vector says: its clock, ids and random values. */
function machineFor(vector) {
  const { random = [0.5], clock_start_ms: start = 0, ...options } = vector.options ?? {};
  const clock = { now: start };
  const counters = { message: 0, request: 0 };
  let draws = 0;
  const machine = new Conversation(Object.fromEntries(Object.entries(options).map(([key, value]) => [camel(key), value])), {
    now: () => clock.now,
    newId: (kind) => `${kind === "request" ? "r" : "m"}-${(counters[kind] += 1)}`,
    random: () => random[draws++ % random.length],
  });
  return { machine, clock };
}

/** The machine's outputs in the vectors' shape. */
function asVector(out) {
  const io = out.io.map(({ reason: _reason, ...rest }) => rest);
  const events = out.events
    .filter((event) => !JS_ONLY_EVENTS.has(event.event))
    .map((event) => {
      if (event.event === "on_progress") {
        const { handle, request_id, seq, percentage, message } = event;
        return { event: "on_progress", handle, request_id, seq, percentage, message };
      }
      return event;
    });
  const results = out.results.map((result) => {
    if (!("error" in result)) return result;
    const error = { code: result.error.code };
    if (result.error.requestStatus) error.request_status = result.error.requestStatus;
    return { handle: result.handle, error };
  });
  return { io, events, results };
}

function runStep(machine, clock, step) {
  const { expect: _expect, ...input } = step;
  if (input.event === "tick") clock.now = input.at;
  return asVector(machine.handle(input));
}

const vectorFiles = (directory) => readdirSync(directory).filter((name) => name.endsWith(".json")).sort();
const shared = vectorFiles(SHARED);
const jsOnly = vectorFiles(JS_ONLY);
console.log(`conversation vectors: ${shared.length} shared (client/conversation/vectors), ${jsOnly.length} JS only (tests/browser/vectors)`);

function runVector(directory, file) {
  const vector = JSON.parse(readFileSync(join(directory, file), "utf8"));
  it(`${vector.name}: ${vector.description}`, () => {
    assert.equal(`${vector.name}.json`, file, "a vector's name is its file's");
    const { machine, clock } = machineFor(vector);
    vector.steps.forEach((step, index) => {
      const got = runStep(machine, clock, step);
      const where = `${file} step ${index + 1}: ${JSON.stringify({ ...step, expect: undefined })}`;
      const expected = step.expect ?? {};
      for (const kind of ["io", "events", "results"]) {
        assert.deepEqual(got[kind], expected[kind] ?? [], `${where}: ${kind}`);
      }
      if (expected.state !== undefined) assert.equal(machine.state, expected.state, `${where}: state`);
    });
  });
}

describe(`shared conversation vectors (${shared.length})`, () => {
  it("there are vectors to run", () => {
    assert.ok(shared.length >= 15, `${shared.length} vectors`);
  });
  for (const file of shared) runVector(SHARED, file);
});

describe(`the JS client's own vectors (${jsOnly.length})`, () => {
  for (const file of jsOnly) runVector(JS_ONLY, file);
});
