// Streamer's WebSocket client for browsers and Node 20+: one ES module, no dependencies.
//
// It follows the wire protocol (docs/protocol.md) and behaves as the Python
// client (client/connection.py):
//
// - Every message it sends carries an `id`: an application request uses its
//   request id, a system action (`ping`, `status`, `subscribe`, ...) a fresh
//   message id, so every `error` names what it answers.
// - `progress` and `complete` are matched by `request_id`; an update whose
//   `seq` is not above the last one seen for its request is dropped, so
//   callbacks see each update at most once and in order.
// - After an unexpected drop it reconnects with jittered exponential backoff
//   and resumes whatever is still awaited: a request the server has not
//   answered is sent again with the same `id` (idempotent: no second run), an
//   accepted one is re-`subscribe`d (the answer is its latest progress or its
//   `complete`), pending system actions are sent again.
// - A `ping` goes out every `heartbeatMs` (default 5 minutes, under the
//   gateway's 10-minute idle timeout).
// - A message refused with a retryable RATE_LIMITED from the connection's
//   rate limit, or with UNAVAILABLE (a dependency such as the store is out;
//   nothing was stored), is sent again after the server's `retry_after_ms`
//   (at least 250 ms) plus a jitter that grows exponentially and is capped:
//   `rateLimitRetries` times in a row for the rate limit, and for as long as
//   the next resend falls within `unavailableDeadlineMs` of the first
//   UNAVAILABLE. Then the caller gets the error.
// - No call waits forever: a message that awaits an answer and gets none
//   within `answerTimeoutMs` rejects its caller with NO_ANSWER (an error that
//   names no message, such as API Gateway's own "Internal server error",
//   cannot be matched to a call; the NO_ANSWER error quotes it).

/** The gateway closes the connection (1009) on a bigger message; the client refuses to send one. */
export const MAX_MESSAGE_BYTES = 128 * 1024;

/** Under the gateway's 10-minute idle timeout, with room for a slow network. */
export const DEFAULT_HEARTBEAT_MS = 300_000;

/** How long a message answered UNAVAILABLE keeps being sent again, as the Python client's. */
export const DEFAULT_UNAVAILABLE_DEADLINE_MS = 30_000;

/** API Gateway ends a route's integration after 29 s: a message unanswered for longer never will be. */
export const DEFAULT_ANSWER_TIMEOUT_MS = 35_000;

// The least wait before sending a refused message again, whatever the server says.
const MIN_RESEND_WAIT_MS = 250;

export const TERMINAL_STATUSES = Object.freeze(["COMPLETED", "FAILED", "CANCELLED"]);

/** The protocol's error codes, and the client's own (connection) codes. */
export const ErrorCodes = Object.freeze({
  INVALID_MESSAGE: "INVALID_MESSAGE",
  INVALID_ACTION: "INVALID_ACTION",
  VALIDATION_ERROR: "VALIDATION_ERROR",
  PAYLOAD_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  UNAUTHORIZED: "UNAUTHORIZED",
  FORBIDDEN: "FORBIDDEN",
  NOT_FOUND: "NOT_FOUND",
  CONFLICT: "CONFLICT",
  RATE_LIMITED: "RATE_LIMITED",
  TIMEOUT: "TIMEOUT",
  PROCESSING_FAILED: "PROCESSING_FAILED",
  CANCELLED: "CANCELLED",
  UNAVAILABLE: "UNAVAILABLE",
  INTERNAL_ERROR: "INTERNAL_ERROR",
  // The client's own:
  NO_ANSWER: "NO_ANSWER",
  CONNECTION_FAILED: "CONNECTION_FAILED",
  CONNECTION_LOST: "CONNECTION_LOST",
  CONNECTION_REFUSED: "CONNECTION_REFUSED",
  UNSUBSCRIBED: "UNSUBSCRIBED",
});

const ACTION_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const ID_RE = /^[A-Za-z0-9_.:-]{1,128}$/;
const OPEN = 1;
const encoder = new TextEncoder();

/**
 * Every error about Streamer: the protocol's error object (`code`, `message`,
 * `details`, `retryable`) plus the request it is about (`requestId`) and, when
 * the request ran and ended so, `requestStatus` (FAILED or CANCELLED; null when
 * the message was refused before anything was stored).
 */
export class StreamerError extends Error {
  constructor(code, message, { details = {}, retryable = false, requestId = null, requestStatus = null } = {}) {
    super(message ? `${code}: ${message}` : code);
    this.name = "StreamerError";
    this.code = code;
    this.reason = message || "";
    this.details = details && typeof details === "object" ? details : {};
    this.retryable = retryable === true;
    this.requestId = requestId;
    this.requestStatus = requestStatus;
  }

  /** The protocol's error object. */
  toJSON() {
    const error = { code: this.code, message: this.reason };
    if (Object.keys(this.details).length) error.details = this.details;
    error.retryable = this.retryable;
    return error;
  }

  /** A typed error from a protocol error object (a malformed one still yields an error). */
  static fromInfo(info, { requestId = null, requestStatus = null } = {}) {
    if (!info || typeof info !== "object") {
      return new StreamerError("INTERNAL_ERROR", "malformed error object from the server", { requestId, requestStatus });
    }
    return new StreamerError(String(info.code ?? "INTERNAL_ERROR"), String(info.message ?? ""), {
      details: info.details && typeof info.details === "object" ? info.details : {},
      retryable: info.retryable === true,
      requestId,
      requestStatus,
    });
  }
}

/**
 * The client could not connect (CONNECTION_FAILED), the server refused the
 * handshake (UNAUTHORIZED for 401, FORBIDDEN for 403, CONNECTION_REFUSED for
 * other statuses; `statusCode` when the WebSocket implementation reports it,
 * which browsers never do), or the connection dropped and every reconnect
 * attempt failed (CONNECTION_LOST).
 */
export class ConnectionError extends StreamerError {
  constructor(code, message, { retryable = true, statusCode = null } = {}) {
    super(code, message, { retryable, details: statusCode ? { status_code: statusCode } : {} });
    this.name = "ConnectionError";
    this.statusCode = statusCode;
  }
}

/** A fresh request id within the protocol's `id` rules (`js-` and 32 hex digits). */
export function newRequestId(prefix = "js") {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** Whether `value` is 1-128 characters of `[A-Za-z0-9_.:-]`. */
export function isValidRequestId(value) {
  return typeof value === "string" && ID_RE.test(value);
}

/**
 * Jittered exponential backoff: attempt n (from 0) waits a uniformly random
 * time up to min(maxDelayMs, initialDelayMs * multiplier ** n) ("full jitter").
 */
export class ReconnectPolicy {
  constructor({ maxAttempts = 8, initialDelayMs = 500, maxDelayMs = 30_000, multiplier = 2 } = {}) {
    if (maxAttempts < 0 || initialDelayMs < 0 || maxDelayMs < 0) throw new RangeError("reconnect policy values must not be negative");
    if (multiplier < 1) throw new RangeError("multiplier must be at least 1");
    Object.assign(this, { maxAttempts, initialDelayMs, maxDelayMs, multiplier });
    Object.freeze(this);
  }

  ceiling(attempt) {
    return Math.min(this.maxDelayMs, this.initialDelayMs * this.multiplier ** attempt);
  }

  delay(attempt, random = Math.random) {
    return random() * this.ceiling(attempt);
  }
}

// --- when to send a refused message again (pure decisions, as client/resend.py) ---

// Whether the refusal says the same message may pass if sent again later. The
// per-user cap on running requests is RATE_LIMITED too, but names
// max_active_requests instead of limit_per_second: it lasts until a request
// ends, so it is never resent.
function isResendable(info) {
  if (!info || info.retryable !== true) return false;
  if (info.code === "RATE_LIMITED") return info.details?.limit_per_second !== undefined;
  return info.code === "UNAVAILABLE";
}

// Milliseconds before sending the refused message again, or null to give up.
// `before` counts the refusals by the same code in a row before this one and
// the milliseconds since the first of them.
function resendWait(info, before, limits, random) {
  if (!isResendable(info)) return null;
  const retryAfter = Number(info.details?.retry_after_ms);
  const floor = Math.max(MIN_RESEND_WAIT_MS, Number.isFinite(retryAfter) ? retryAfter : 0);
  const wait = floor + limits.policy.delay(before.count, random);
  if (info.code === "RATE_LIMITED") return before.count < limits.rateLimitRetries ? wait : null;
  return before.ms + wait <= limits.unavailableDeadlineMs ? wait : null;
}

// The error object the caller gets once the resends are over: the server's, saying so.
function givenUp(info, refusals) {
  if (refusals.count <= 1) return info;
  const note = `gave up after ${refusals.count} refusals over ${(refusals.ms / 1000).toFixed(1)} s`;
  return { ...info, message: info.message ? `${info.message} (${note})` : note };
}

/** The URL with `?token=` set: browsers cannot set headers on a WebSocket. */
export function urlWithToken(url, token) {
  const parsed = new URL(url);
  parsed.searchParams.set("token", token);
  return parsed.toString();
}

function encode(message) {
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

function checkedId(value, what = "request id") {
  if (!isValidRequestId(value)) throw new TypeError(`${what} must be 1-128 characters of [A-Za-z0-9_.:-]: ${JSON.stringify(value)}`);
  return value;
}

function optionalInt(value) {
  return Number.isInteger(value) ? value : null;
}

function parseProgress(m) {
  return {
    requestId: m.request_id,
    seq: Number(m.seq),
    percentage: Number(m.percentage ?? 0),
    message: String(m.message ?? ""),
    metadata: m.metadata && typeof m.metadata === "object" ? m.metadata : {},
    timestamp: optionalInt(m.timestamp),
  };
}

function parseCompletion(m) {
  const status = String(m.status);
  return {
    requestId: m.request_id,
    seq: optionalInt(m.seq),
    status,
    result: status === "COMPLETED" ? m.result : undefined,
    error: status === "COMPLETED" ? null : StreamerError.fromInfo(m.error ?? { code: status === "CANCELLED" ? "CANCELLED" : "INTERNAL_ERROR", message: `request ended ${status}` }, { requestId: m.request_id, requestStatus: status }),
    timestamp: optionalInt(m.timestamp),
  };
}

function parseSnapshot(r) {
  if (!r || typeof r !== "object" || typeof r.request_id !== "string") return null;
  const terminal = TERMINAL_STATUSES.includes(r.status);
  return {
    requestId: r.request_id,
    action: String(r.action ?? ""),
    status: String(r.status),
    progress: typeof r.progress === "number" ? r.progress : null,
    progressMessage: r.progress_message ?? null,
    createdAt: optionalInt(r.created_at),
    updatedAt: optionalInt(r.updated_at),
    result: terminal && r.status === "COMPLETED" ? r.result : undefined,
    error: r.error ? StreamerError.fromInfo(r.error, { requestId: r.request_id, requestStatus: terminal ? r.status : null }) : null,
    terminal,
  };
}

function resultOf(event) {
  if (event.type === "response") {
    if (event.success) return event.data;
    throw StreamerError.fromInfo(event.error ?? { code: "INTERNAL_ERROR", message: "response without an error object" }, {
      requestId: event.requestId,
      requestStatus: "FAILED",
    });
  }
  if (event.status === "COMPLETED") return event.result;
  throw event.error;
}

function decodeData(data) {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data);
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
  return String(data);
}

function safeCall(callback, value, logger) {
  if (!callback) return;
  try {
    const outcome = callback(value);
    if (outcome && typeof outcome.catch === "function") outcome.catch((error) => logger.warn("callback failed", error));
  } catch (error) {
    logger.warn("callback failed", error);
  }
}

/**
 * A connection to Streamer that runs requests and follows their progress.
 *
 *   const client = new StreamerClient("ws://127.0.0.1:8080/", token);
 *   await client.connect();
 *   const result = await client.call("generate_report", { pages: 5 }, { onProgress: (p) => console.log(p.percentage) });
 *
 * Options: `WebSocket` (a constructor; default `globalThis.WebSocket`),
 * `createWebSocket(url)` (a factory, wins over `WebSocket`), `reconnect`
 * (`ReconnectPolicy` or its options), `heartbeatMs` (null disables),
 * `openTimeoutMs`, `random` (for the jitter), `logger`, `onStateChange(state,
 * info)` with state `connecting`, `open`, `reconnecting`, `closed`,
 * `rateLimitRetries` (default 3), `unavailableDeadlineMs` (default 30000; 0
 * gives the first UNAVAILABLE to the caller) and `answerTimeoutMs` (default
 * 35000; null waits forever).
 */
export class StreamerClient {
  constructor(url, token, options = {}) {
    if (typeof token !== "string" || !token) throw new TypeError("a token is required");
    this.url = url;
    this._url = urlWithToken(url, token);
    this._policy = options.reconnect instanceof ReconnectPolicy ? options.reconnect : new ReconnectPolicy(options.reconnect ?? {});
    this._heartbeatMs = options.heartbeatMs === undefined ? DEFAULT_HEARTBEAT_MS : options.heartbeatMs;
    if (this._heartbeatMs !== null && !(this._heartbeatMs > 0)) throw new RangeError("heartbeatMs must be positive or null");
    this._openTimeoutMs = options.openTimeoutMs ?? 10_000;
    this._random = options.random ?? Math.random;
    this._logger = options.logger ?? { info() {}, warn() {} };
    this._onStateChange = options.onStateChange ?? null;
    const unavailableDeadlineMs = options.unavailableDeadlineMs ?? DEFAULT_UNAVAILABLE_DEADLINE_MS;
    if (!(unavailableDeadlineMs >= 0)) throw new RangeError("unavailableDeadlineMs must not be negative");
    this._resendLimits = { rateLimitRetries: options.rateLimitRetries ?? 3, unavailableDeadlineMs, policy: this._policy };
    this._answerTimeoutMs = options.answerTimeoutMs === undefined ? DEFAULT_ANSWER_TIMEOUT_MS : options.answerTimeoutMs;
    if (this._answerTimeoutMs !== null && !(this._answerTimeoutMs > 0)) throw new RangeError("answerTimeoutMs must be positive or null");
    this._unmatched = null; // the latest error naming no message, and when it came
    const WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    this._createWebSocket = options.createWebSocket ?? (WebSocketImpl ? (u) => new WebSocketImpl(u) : null);
    if (!this._createWebSocket) {
      throw new TypeError("no WebSocket here: pass the WebSocket option (in Node 20, e.g. the ws package's WebSocket)");
    }
    this.state = "idle";
    this._ws = null;
    this._generation = 0;
    this._failure = null;
    this._closing = false;
    this._requests = new Map(); // request id -> tracked request
    this._aliases = new Map(); // subscribe message id -> request id
    this._calls = new Map(); // message id -> pending system call
    this._heartbeat = null;
    this._reconnectTimer = null;
  }

  /** Whether the socket is open now (false while reconnecting). */
  get connected() {
    return this._ws !== null && this._ws.readyState === OPEN && this.state === "open";
  }

  /**
   * Open the connection. Rejects with `ConnectionError`: UNAUTHORIZED/FORBIDDEN
   * when the handshake is refused with 401/403 (only where the WebSocket
   * implementation reports the status, e.g. the ws package), CONNECTION_FAILED
   * otherwise. The first connection is not retried: a wrong URL or token fails fast.
   */
  async connect() {
    if (this.state !== "idle") throw new Error("StreamerClient.connect() may be called once");
    this._setState("connecting");
    try {
      this._ws = await this._open();
    } catch (error) {
      this._setState("closed", { error });
      this._fail(error);
      throw error;
    }
    this._generation = 1;
    this._attach(this._ws);
    this._setState("open");
    this._resume(true);
    if (this._heartbeatMs !== null) {
      this._heartbeat = setInterval(() => this._beat(), this._heartbeatMs);
      this._heartbeat.unref?.();
    }
  }

  /** Close the connection; everything still awaited rejects with CONNECTION_FAILED. */
  close() {
    this._closing = true;
    clearInterval(this._heartbeat);
    clearTimeout(this._reconnectTimer);
    if (this._ws && this._ws.readyState <= OPEN) {
      try {
        this._ws.close(1000, "client closed");
      } catch {
        // already closing
      }
    }
    if (!this._failure) this._fail(new ConnectionError("CONNECTION_FAILED", "the client is closed"));
    this._setState("closed");
  }

  /**
   * Run `action` and resolve with its result, sync or async alike: a sync
   * action's `response` data, or the `result` of an async action's COMPLETED
   * `complete`, reporting each new progress to `onProgress` in `seq` order.
   * `id` (default: a new one) is the idempotency key: calling again with the
   * same id, action and payload starts no second run and still resolves.
   * Rejects with a `StreamerError` (the protocol's code; `requestStatus` FAILED
   * or CANCELLED when the request ran and ended so), or a TypeError for an
   * action, id or payload the protocol does not allow.
   */
  call(action, payload = {}, { onProgress, onAcknowledged, id, metadata } = {}) {
    return new Promise((resolve, reject) => {
      if (typeof action !== "string" || !ACTION_RE.test(action)) throw new TypeError(`action must be 1-64 characters of [A-Za-z0-9_.-]: ${JSON.stringify(action)}`);
      if (payload === null || typeof payload !== "object" || Array.isArray(payload)) throw new TypeError("payload must be an object");
      const fresh = id === undefined || id === null;
      const requestId = fresh ? newRequestId() : checkedId(id);
      const message = { action, id: requestId, payload };
      if (metadata !== undefined) {
        if (!metadata || typeof metadata !== "object" || !Object.values(metadata).every((v) => typeof v === "string")) {
          throw new TypeError("metadata must map strings to strings");
        }
        message.metadata = metadata;
      }
      const text = encode(message);
      this._checkUsable();
      let repeats = 0;
      const watcher = this._watch(requestId, {
        progress: (p) => safeCall(onProgress, p, this._logger),
        acknowledgment: (a) => safeCall(onAcknowledged, a, this._logger),
        settle: (event) => {
          try {
            resolve(resultOf(event));
          } catch (error) {
            reject(error);
          }
        },
        rejection: (error) => {
          const request = this._requests.get(requestId);
          if (error.code === "CONFLICT" && error.retryable && request?.resent && repeats < this._policy.maxAttempts) {
            // This client's own repeat after a reconnect met the first run still
            // going (a sync request): ask again until it has answered.
            const wait = this._policy.delay(repeats, this._random);
            repeats += 1;
            setTimeout(() => {
              if (this._requests.get(requestId) === request && request.pendingMessage) this._send(request.pendingMessage, request);
            }, wait);
            return false;
          }
          reject(error);
          return true;
        },
        fail: reject,
      }, { pendingMessage: text, fresh });
      if (watcher) this._send(text, this._requests.get(requestId));
    });
  }

  /**
   * Follow an existing request (e.g. one started before a page reload) to its
   * end. The server answers with a snapshot: its latest progress (handed to
   * `onProgress`) or, if it has ended, its `complete`, which settles at once.
   * Resolves with the result or rejects as `call` does (NOT_FOUND for an unknown id).
   */
  subscribe(requestId, { onProgress } = {}) {
    return new Promise((resolve, reject) => {
      checkedId(requestId);
      this._checkUsable();
      this._watch(requestId, {
        progress: (p) => safeCall(onProgress, p, this._logger),
        settle: (event) => {
          try {
            resolve(resultOf(event));
          } catch (error) {
            reject(error);
          }
        },
        rejection: (error) => {
          reject(error);
          return true;
        },
        fail: reject,
      });
      this._send(this._subscribeMessage(requestId), this._requests.get(requestId));
    });
  }

  /** Stop a request's updates on this connection; a `call`/`subscribe` awaiting it rejects with UNSUBSCRIBED. */
  async unsubscribe(requestId) {
    checkedId(requestId);
    await this._systemCall("unsubscribe", "unsubscribed", requestId);
    const request = this._requests.get(requestId);
    if (request) {
      const ended = new StreamerError("UNSUBSCRIBED", "unsubscribed", { requestId });
      for (const watcher of [...request.watchers]) this._finish(request, watcher, () => watcher.fail(ended));
    }
  }

  /** The request's stored state (`status`, `progress`, `progressMessage`, `result`/`error`, timestamps). */
  async status(requestId) {
    checkedId(requestId);
    return this._systemCall("status", "status", requestId);
  }

  /**
   * Cancel a request and resolve with how it ended: `{requestId, status, result, error}`
   * with status CANCELLED, or the status it had already ended with. A running
   * request ends when its worker notices, so this subscribes first and waits
   * for the `complete`. Rejects with NOT_FOUND for an unknown id.
   */
  cancel(requestId) {
    return new Promise((resolve, reject) => {
      checkedId(requestId);
      this._checkUsable();
      let done = false;
      let watcher = null;
      const finish = (fn) => {
        if (done) return;
        done = true;
        const request = this._requests.get(requestId);
        if (request && watcher) this._finish(request, watcher, () => {});
        fn();
      };
      watcher = this._watch(requestId, {
        settle: (event) => finish(() => resolve(event.type === "complete" ? { requestId, status: event.status, result: event.result, error: event.error } : { requestId, status: "COMPLETED", result: event.data, error: null })),
        rejection: (error) => {
          finish(() => reject(error));
          return true;
        },
        fail: (error) => finish(() => reject(error)),
      });
      this._send(this._subscribeMessage(requestId), this._requests.get(requestId));
      this._systemCall("cancel", "status", requestId).then(
        (snapshot) => {
          if (snapshot.terminal) finish(() => resolve({ requestId, status: snapshot.status, result: snapshot.result, error: snapshot.error }));
        },
        (error) => finish(() => reject(error)),
      );
    });
  }

  /** Send `ping`, await `pong`; resolves with the round trip in milliseconds. */
  async ping() {
    const started = Date.now();
    await this._systemCall("ping", "pong", null);
    return Date.now() - started;
  }

  // --- requests and their watchers ------------------------------------------------

  _checkUsable() {
    if (this._failure) throw this._failure;
    if (this.state === "idle") throw new Error("StreamerClient is not connected: call connect() first");
  }

  // A watcher has: progress(p), acknowledgment(a), settle(response|complete),
  // rejection(error) -> true when it ends the watch, fail(error).
  _watch(requestId, handlers, { pendingMessage = null, fresh = false } = {}) {
    let request = this._requests.get(requestId);
    if (!request) {
      // `refused`: per refusing code, {count, since} of the refusals in a row
      // since the server last sent anything else about it.
      request = { requestId, pendingMessage: null, freshOn: null, resent: false, lastSeq: 0, messageIds: new Set(), watchers: new Set(), refused: new Map(), answerTimer: null, sentAt: 0 };
      this._requests.set(requestId, request);
    }
    if (pendingMessage !== null) {
      request.pendingMessage = pendingMessage;
      request.freshOn = fresh ? this._generation : null;
    }
    request.watchers.add(handlers);
    return handlers;
  }

  _finish(request, watcher, then) {
    request.watchers.delete(watcher);
    if (request.watchers.size === 0 && this._requests.get(request.requestId) === request) {
      this._heard(request);
      this._requests.delete(request.requestId);
      for (const messageId of request.messageIds) this._aliases.delete(messageId);
    }
    then();
  }

  _subscribeMessage(requestId) {
    const messageId = newRequestId("m");
    this._requests.get(requestId)?.messageIds.add(messageId);
    this._aliases.set(messageId, requestId);
    return encode({ action: "subscribe", id: messageId, request_id: requestId });
  }

  _systemCall(action, answer, target) {
    return new Promise((resolve, reject) => {
      this._checkUsable();
      const messageId = newRequestId("m");
      const message = { action, id: messageId };
      if (target !== null) message.request_id = target;
      const settle = (fn) => (value) => {
        this._heard(call);
        fn(value);
      };
      const call = { messageId, message: encode(message), answer, target, resolve: settle(resolve), reject: settle(reject), refused: new Map(), answerTimer: null, sentAt: 0 };
      this._calls.set(messageId, call);
      this._send(call.message, call);
    });
  }

  // Send a message `owner` (a tracked request or a system call) awaits the
  // answer to. A message lost to a drop needs no retry here: whatever it
  // belongs to is still awaited, so the reconnect sends it again.
  _send(text, owner) {
    if (this.state === "open" && this._ws && this._ws.readyState === OPEN) {
      try {
        this._ws.send(text);
      } catch (error) {
        this._logger.info("send failed; it is sent again on reconnect", error);
        return;
      }
      if (owner) this._expectAnswer(owner);
    }
  }

  // --- the answer timeout ---------------------------------------------------------------

  _expectAnswer(owner) {
    if (this._answerTimeoutMs === null) return;
    clearTimeout(owner.answerTimer);
    owner.sentAt = Date.now();
    const generation = this._generation;
    owner.answerTimer = setTimeout(() => this._noAnswer(owner, generation), this._answerTimeoutMs);
    owner.answerTimer.unref?.();
  }

  // The server answered about `owner`: nothing it awaits is overdue.
  _heard(owner) {
    clearTimeout(owner.answerTimer);
    owner.answerTimer = null;
  }

  _noAnswer(owner, generation) {
    owner.answerTimer = null;
    // On a connection since replaced, or being replaced, the resume sends it
    // again and starts a new timeout.
    if (generation !== this._generation || this.state !== "open" || this._failure) return;
    let reason = `no answer within ${this._answerTimeoutMs} ms`;
    if (this._unmatched && this._unmatched.at >= owner.sentAt) {
      const { info } = this._unmatched;
      reason += `; meanwhile the server sent an error naming no message: ${info?.code}: ${info?.message}`;
    }
    if (owner.messageId !== undefined) {
      if (this._calls.get(owner.messageId) !== owner) return;
      this._calls.delete(owner.messageId);
      owner.reject(new StreamerError("NO_ANSWER", reason, { retryable: true, requestId: owner.target }));
      return;
    }
    if (this._requests.get(owner.requestId) !== owner) return;
    const error = new StreamerError("NO_ANSWER", reason, { retryable: true, requestId: owner.requestId });
    for (const watcher of [...owner.watchers]) this._finish(owner, watcher, () => watcher.fail(error));
  }

  // --- the socket --------------------------------------------------------------------

  _setState(state, info = {}) {
    if (this.state === state && state !== "reconnecting") return;
    this.state = state;
    safeCall(this._onStateChange && ((s) => this._onStateChange(s, info)), state, this._logger);
  }

  _open() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = this._createWebSocket(this._url);
      } catch (error) {
        reject(new ConnectionError("CONNECTION_FAILED", `could not connect to ${this.url}: ${error.message}`));
        return;
      }
      let settled = false;
      let statusCode = null;
      const done = (error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        // A no-op, not null: the ws package throws an error event nobody listens to.
        ws.onopen = ws.onclose = null;
        ws.onerror = () => {};
        if (error) {
          try {
            ws.close();
          } catch {
            // never opened
          }
          reject(error);
        } else {
          resolve(ws);
        }
      };
      const timer = setTimeout(() => done(new ConnectionError("CONNECTION_FAILED", `could not connect to ${this.url}: no handshake within ${this._openTimeoutMs} ms`)), this._openTimeoutMs);
      ws.onopen = () => done(null);
      ws.onerror = (event) => {
        // Browsers hide why a handshake failed; the ws package names the HTTP status.
        const text = String(event?.message ?? event?.error?.message ?? "");
        const match = /Unexpected server response: (\d{3})/.exec(text);
        if (match) statusCode = Number(match[1]);
        done(refused(statusCode, this.url, text));
      };
      ws.onclose = (event) => done(refused(statusCode, this.url, `closed with code ${event?.code}`));
    });
  }

  _attach(ws) {
    ws.onmessage = (event) => {
      if (ws !== this._ws) return;
      try {
        this._dispatch(decodeData(event.data));
      } catch (error) {
        // One bad message must not stop the reader every caller depends on.
        this._logger.warn("could not handle a server message", error);
      }
    };
    ws.onerror = () => {};
    ws.onclose = (event) => {
      if (ws !== this._ws || this._closing) return;
      this._logger.info(`connection to ${this.url} dropped (code ${event?.code}); reconnecting`);
      this._reconnect(0, null);
    };
  }

  _reconnect(attempt, lastError) {
    if (this._closing) return;
    if (attempt >= this._policy.maxAttempts) {
      const error = new ConnectionError(
        "CONNECTION_LOST",
        `connection to ${this.url} dropped; ${this._policy.maxAttempts} reconnect attempts failed (last: ${lastError?.message ?? "none"})`,
      );
      this._setState("closed", { error });
      this._fail(error);
      return;
    }
    this._setState("reconnecting", { attempt: attempt + 1 });
    this._reconnectTimer = setTimeout(async () => {
      let ws;
      try {
        ws = await this._open();
      } catch (error) {
        if (this._closing) return;
        if (!error.retryable) {
          this._setState("closed", { error });
          this._fail(error);
          return;
        }
        this._logger.info(`reconnect attempt ${attempt + 1} failed: ${error.message}`);
        this._reconnect(attempt + 1, error);
        return;
      }
      if (this._closing) {
        ws.close(1000, "client closed");
        return;
      }
      this._ws = ws;
      this._generation += 1;
      this._attach(ws);
      this._setState("open", { reconnected: true });
      this._resume();
    }, this._policy.delay(attempt, this._random));
  }

  // Everything still awaited, sent (again) on a new connection. On the first
  // one, that is only what was asked for while it opened: never sent before.
  _resume(initial = false) {
    const messages = [];
    for (const request of this._requests.values()) {
      if (request.pendingMessage !== null) {
        messages.push([request.pendingMessage, request]);
        if (!initial) request.resent = true;
        else if (request.freshOn !== null) request.freshOn = this._generation;
      } else {
        messages.push([this._subscribeMessage(request.requestId), request]);
      }
    }
    for (const call of this._calls.values()) messages.push([call.message, call]);
    for (const [message, owner] of messages) this._send(message, owner);
  }

  _beat() {
    if (this.state !== "open") return;
    const timer = setTimeout(() => this._logger.info(`heartbeat ping got no pong within ${this._heartbeatMs} ms`), this._heartbeatMs);
    timer.unref?.();
    this.ping().then(
      () => clearTimeout(timer),
      () => clearTimeout(timer),
    );
  }

  _fail(error) {
    this._failure = error;
    clearInterval(this._heartbeat);
    for (const request of [...this._requests.values()]) {
      this._heard(request);
      for (const watcher of [...request.watchers]) this._finish(request, watcher, () => watcher.fail(error));
    }
    for (const call of this._calls.values()) call.reject(error);
    this._calls.clear();
  }

  // --- what the server sends ---------------------------------------------------------

  _dispatch(raw) {
    let m;
    try {
      m = JSON.parse(raw);
    } catch {
      return;
    }
    if (!m || typeof m !== "object" || Array.isArray(m)) return;
    const requestId = typeof m.request_id === "string" ? m.request_id : null;
    if (m.type === undefined && typeof m.message === "string") {
      // API Gateway's own answer when a route's integration fails or times out:
      // {"message": "Internal server error", "connectionId", "requestId"}, where
      // requestId is the gateway's, so it names no message of ours.
      return this._reject(null, { code: "INTERNAL_ERROR", message: m.message, retryable: false });
    }
    switch (m.type) {
      case "pong":
        return this._answer("pong", null, {}, true);
      case "status": {
        const snapshot = parseSnapshot(m.request);
        if (snapshot) this._answer("status", snapshot.requestId, snapshot, false);
        return;
      }
      case "unsubscribed":
        return this._answer("unsubscribed", requestId, { requestId }, requestId === null);
      case "error":
        return this._reject(requestId, m.error);
      case "acknowledgment":
        if (requestId) this._deliver({ type: "acknowledgment", requestId, estimatedDurationMs: optionalInt(m.estimated_duration_ms) });
        return;
      case "response":
        if (requestId) {
          this._deliver({ type: "response", requestId, success: m.success === true, data: m.data, error: m.success === true ? null : m.error });
        }
        return;
      case "progress":
        if (requestId && Number.isFinite(Number(m.seq))) this._deliver({ type: "progress", ...parseProgress(m) });
        return;
      case "complete":
        if (requestId && typeof m.status === "string") this._deliver({ type: "complete", ...parseCompletion(m) });
        return;
      default:
        // Unknown types are skipped so a newer server can add some.
        return;
    }
  }

  _answer(answer, target, value, onlyOldest) {
    for (const [messageId, call] of this._calls) {
      if (call.answer === answer && (target === null || call.target === target)) {
        this._calls.delete(messageId);
        call.resolve(value);
        if (onlyOldest) return;
      }
    }
  }

  _reject(answered, info) {
    if (answered === null) {
      this._logger.warn("server error answering no message", info);
      this._unmatched = { info, at: Date.now() };
      return;
    }
    if (isResendable(info)) {
      info = this._retryLater(answered, info);
      if (info === null) return;
    }
    const call = this._calls.get(answered);
    if (call) {
      this._calls.delete(answered);
      call.reject(StreamerError.fromInfo(info, { requestId: call.target }));
      return;
    }
    const requestId = this._aliases.get(answered) ?? answered;
    const request = this._requests.get(requestId);
    if (request) {
      this._heard(request);
      const error = StreamerError.fromInfo(info, { requestId });
      for (const watcher of [...request.watchers]) {
        if (watcher.rejection(error)) this._finish(request, watcher, () => {});
      }
      return;
    }
    // A server may name the request a system action was about, not the message id.
    for (const [messageId, pending] of this._calls) {
      if (pending.target === answered) {
        this._calls.delete(messageId);
        pending.reject(StreamerError.fromInfo(info, { requestId: answered }));
      }
    }
  }

  // A refused message that a later resend may pass (the connection's rate
  // limit, or UNAVAILABLE; nothing was stored, so this is safe): send it again
  // later if `resendWait` says so, and return null; otherwise return the error
  // object its caller gets (saying the client gave up when its resends are over).
  _retryLater(answered, info) {
    let owner;
    let resend;
    const call = this._calls.get(answered);
    const aliased = this._aliases.get(answered);
    if (call) {
      owner = call;
      resend = () => this._calls.get(answered) === call && this._send(call.message, call);
    } else if (aliased !== undefined) {
      owner = this._requests.get(aliased);
      resend = () => {
        if (this._requests.get(aliased) !== owner) return;
        this._aliases.delete(answered);
        owner.messageIds.delete(answered);
        this._send(this._subscribeMessage(aliased), owner);
      };
    } else {
      owner = this._requests.get(answered);
      if (owner?.pendingMessage == null) return info;
      resend = () => this._requests.get(answered) === owner && owner.pendingMessage && this._send(owner.pendingMessage, owner);
    }
    if (!owner) return info;
    this._heard(owner);
    const now = Date.now();
    const { count, since } = owner.refused.get(info.code) ?? { count: 0, since: now };
    const wait = resendWait(info, { count, ms: now - since }, this._resendLimits, this._random);
    if (wait === null) return givenUp(info, { count: count + 1, ms: now - since });
    owner.refused.set(info.code, { count: count + 1, since });
    const generation = this._generation;
    setTimeout(() => {
      // On a connection since replaced the resume has sent it.
      if (generation === this._generation && !this._failure) resend();
    }, wait);
    return null;
  }

  _deliver(event) {
    const request = this._requests.get(event.requestId);
    if (!request) return;
    // The server answered about it: a later refusal (e.g. on a resume) starts a fresh count.
    request.refused.clear();
    this._heard(request);
    if ((event.type === "progress" || event.type === "complete") && event.seq !== null) {
      if (event.seq <= request.lastSeq) return;
      request.lastSeq = event.seq;
    }
    if (event.type !== "progress") request.pendingMessage = null;
    if (event.type === "acknowledgment" && request.freshOn !== this._generation) {
      // Accepted earlier (a repeated id) or on a connection since replaced:
      // this connection is not the owner, so it must ask for the updates.
      this._send(this._subscribeMessage(request.requestId), request);
    }
    for (const watcher of [...request.watchers]) {
      if (event.type === "progress") watcher.progress?.(event);
      else if (event.type === "acknowledgment") watcher.acknowledgment?.(event);
      else this._finish(request, watcher, () => watcher.settle(event));
    }
  }
}

function refused(statusCode, url, text) {
  if (statusCode === 401) return new ConnectionError("UNAUTHORIZED", "handshake refused with HTTP 401", { retryable: false, statusCode });
  if (statusCode === 403) return new ConnectionError("FORBIDDEN", "handshake refused with HTTP 403", { retryable: false, statusCode });
  if (statusCode) return new ConnectionError("CONNECTION_REFUSED", `handshake refused with HTTP ${statusCode}`, { statusCode });
  return new ConnectionError("CONNECTION_FAILED", `could not connect to ${url}${text ? `: ${text}` : ""}`);
}
