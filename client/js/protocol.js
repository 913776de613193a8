// The protocol's rules a client checks before sending, and when to send a refused message again.

import { StreamerError } from "./errors.js";

/** The gateway closes the connection (1009) on a bigger message; the client refuses to send one. */
export const MAX_MESSAGE_BYTES = 128 * 1024;

export const TERMINAL_STATUSES = Object.freeze(["COMPLETED", "FAILED", "CANCELLED"]);

// The least wait before sending a refused message again, whatever the server says.
const MIN_RESEND_WAIT_MS = 250;

const ACTION_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const ID_RE = /^[A-Za-z0-9_.:-]{1,128}$/;
const encoder = new TextEncoder();

function randomHex() {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A fresh request id within the protocol's `id` rules (`js-` and 32 hex digits). */
export function newRequestId(prefix = "js") {
  return `${prefix}-${randomHex()}`;
}

/** The ids a conversation makes: `m-<hex>` for messages, `js-<hex>` for requests. */
export function newId(kind) {
  return newRequestId(kind === "request" ? "js" : "m");
}

/** Whether `value` is 1-128 characters of `[A-Za-z0-9_.:-]` (request ids and topic names). */
export function isValidRequestId(value) {
  return typeof value === "string" && ID_RE.test(value);
}

export function checkedId(value, what = "request id") {
  if (!isValidRequestId(value)) throw new TypeError(`${what} must be 1-128 characters of [A-Za-z0-9_.:-]: ${JSON.stringify(value)}`);
  return value;
}

export function checkedAction(action) {
  if (typeof action !== "string" || !ACTION_RE.test(action)) throw new TypeError(`action must be 1-64 characters of [A-Za-z0-9_.-]: ${JSON.stringify(action)}`);
  return action;
}

/** The message as JSON text; a TypeError for what JSON cannot say, PAYLOAD_TOO_LARGE over 128 KiB. */
export function encode(message) {
  const text = JSON.stringify(message, (key, value) => {
    if (typeof value === "number" && !Number.isFinite(value)) {
      throw new TypeError(`${key || "value"} is not JSON: ${value}`);
    }
    if (typeof value === "bigint") throw new TypeError(`${key || "value"} is a BigInt, not JSON`);
    return value;
  });
  const size = encoder.encode(text).length;
  if (size > MAX_MESSAGE_BYTES) {
    throw new StreamerError("PAYLOAD_TOO_LARGE", `message of ${size} bytes is over the ${MAX_MESSAGE_BYTES}-byte limit`, {
      details: { size, limit: MAX_MESSAGE_BYTES },
    });
  }
  return text;
}

// --- when to send a refused message again (pure decisions, as client/resend.py) ---

/**
 * Whether the refusal says the same message may pass if sent again later. The
 * per-user cap on running requests is RATE_LIMITED too, but names
 * max_active_requests instead of limit_per_second: it lasts until a request
 * ends, so it is never resent.
 */
export function isResendable(info) {
  if (!info || info.retryable !== true) return false;
  if (info.code === "RATE_LIMITED") return info.details?.limit_per_second !== undefined;
  return info.code === "UNAVAILABLE";
}

/**
 * Milliseconds before sending the refused message again, or null to give up.
 * `before` counts the refusals by the same code in a row before this one
 * (`count`) and the milliseconds since the first of them (`ms`); `jitter(n)`
 * is the backoff's random wait for the n-th.
 */
export function resendWait(info, before, { rateLimitRetries, unavailableDeadlineMs }, jitter) {
  if (!isResendable(info)) return null;
  const retryAfter = Number(info.details?.retry_after_ms);
  const floor = Math.max(MIN_RESEND_WAIT_MS, Number.isFinite(retryAfter) ? retryAfter : 0);
  const wait = floor + jitter(before.count);
  if (info.code === "RATE_LIMITED") return before.count < rateLimitRetries ? wait : null;
  return before.ms + wait <= unavailableDeadlineMs ? wait : null;
}

/** The error object the caller gets once the resends are over: the server's, saying so. */
export function givenUp(info, refusals) {
  if (refusals.count <= 1) return info;
  const note = `gave up after ${refusals.count} refusals over ${(refusals.ms / 1000).toFixed(1)} s`;
  return { ...info, message: info.message ? `${info.message} (${note})` : note };
}
