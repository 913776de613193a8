// Streamer's WebSocket client for browsers and Node 20+: ES modules, no dependencies.
//
// This module is the I/O around the conversation (conversation.js, which
// decides what to send and what each server message means): sockets, timers,
// tokens, connection states, keepalive, rotation and the browser's life.
//
// - Connection states: `initialized`, `connecting`, `connected`,
//   `disconnected` (retrying with jittered backoff), `suspended` (the backoff's
//   attempts are spent: retrying every `suspendedRetryMs`), `closed` (by
//   `close()`), `failed` (for good: a refused handshake with a fixed token, a
//   token provider that keeps failing, or `giveUpAfterMs` without a
//   connection). Reconnecting never gives up by default.
// - The token is a string or a provider, an async function called before
//   every connect for a fresh one.
// - API Gateway closes a connection after 2 hours (reconnect.js cites the
//   quota), and an expired token opens none: the client rotates the
//   connection before either, opening the new one first, resuming on it,
//   then closing the old one.
// - A `ping` every `heartbeatMs` keeps the connection under the gateway's
//   10-minute idle timeout; one unanswered within `pongTimeoutMs` means the
//   connection is dead, and the client reconnects at once.
// - In a browser: `online` reconnects at once, `offline` pauses the retries,
//   a page that becomes visible checks its connection.

import { ConnectionError, StreamerError } from "./errors.js";
import { Conversation, DEFAULT_ANSWER_TIMEOUT_MS, DEFAULT_RATE_LIMIT_RETRIES, DEFAULT_UNAVAILABLE_DEADLINE_MS } from "./conversation.js";
import { DEFAULT_HEARTBEAT_MS, DEFAULT_ROTATION_MARGIN_MS, GATEWAY_MAX_CONNECTION_MS, ReconnectPolicy, rotationDelay, tokenExpiry } from "./reconnect.js";

export { ConnectionError, StreamerError } from "./errors.js";
export {
  Conversation,
  DEFAULT_ANSWER_TIMEOUT_MS,
  DEFAULT_UNAVAILABLE_DEADLINE_MS,
  MAX_MESSAGE_BYTES,
  TERMINAL_STATUSES,
  isValidRequestId,
  newRequestId,
} from "./conversation.js";
export {
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_ROTATION_MARGIN_MS,
  DEFAULT_SUSPENDED_RETRY_MS,
  GATEWAY_IDLE_TIMEOUT_MS,
  GATEWAY_MAX_CONNECTION_MS,
  ReconnectPolicy,
  rotationDelay,
  tokenExpiry,
} from "./reconnect.js";

/** The client's version (client/js/package.json's). */
export const VERSION = "0.2.0";

/** A keepalive `ping` unanswered this long means the connection is dead. */
export const DEFAULT_PONG_TIMEOUT_MS = 10_000;

/** A token provider that fails this often in a row fails the client. */
export const DEFAULT_TOKEN_ATTEMPTS = 5;

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
  TOKEN_FAILED: "TOKEN_FAILED",
  UNSUBSCRIBED: "UNSUBSCRIBED",
});

export const CONNECTION_STATES = Object.freeze(["initialized", "connecting", "connected", "disconnected", "suspended", "closed", "failed"]);

const OPEN = 1;

/** The URL with `?token=` set: browsers cannot set headers on a WebSocket. */
export function urlWithToken(url, token) {
  const parsed = new URL(url);
  parsed.searchParams.set("token", token);
  return parsed.toString();
}

function decodeData(data) {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data);
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
  return String(data);
}

function refused(statusCode, url, text) {
  if (statusCode === 401) return new ConnectionError("UNAUTHORIZED", "handshake refused with HTTP 401", { retryable: false, statusCode });
  if (statusCode === 403) return new ConnectionError("FORBIDDEN", "handshake refused with HTTP 403", { retryable: false, statusCode });
  if (statusCode) return new ConnectionError("CONNECTION_REFUSED", `handshake refused with HTTP ${statusCode}`, { statusCode });
  return new ConnectionError("CONNECTION_FAILED", `could not connect to ${url}${text ? `: ${text}` : ""}`);
}

function positiveOrNull(value, fallback, name) {
  const chosen = value === undefined ? fallback : value;
  if (chosen !== null && !(chosen > 0)) throw new RangeError(`${name} must be positive or null`);
  return chosen;
}

// The browser's window, document and navigator, when there are any.
function browserLife() {
  const target = globalThis.window;
  if (!target || typeof target.addEventListener !== "function") return null;
  return {
    target,
    online: () => globalThis.navigator?.onLine !== false,
    visible: () => globalThis.document?.visibilityState !== "hidden",
    document: globalThis.document ?? null,
  };
}

/**
 * A connection to Streamer that runs requests, follows their progress and
 * delivers topic notifications, across reconnects, token renewals and
 * rotations.
 *
 *   const client = new StreamerClient("ws://127.0.0.1:8080/", async () => fetchToken());
 *   await client.connect();
 *   const result = await client.call("generate_report", { pages: 5 }, { onProgress: (p) => console.log(p.percentage) });
 *
 * See README.md for the options.
 */
export class StreamerClient {
  constructor(url, token, options = {}) {
    if (typeof token === "function") this._provider = token;
    else if (typeof token === "string" && token) this._fixedToken = token;
    else throw new TypeError("a token (a string, or an async function that returns one) is required");
    this.url = url;
    new URL(url);
    this._policy = options.reconnect instanceof ReconnectPolicy ? options.reconnect : new ReconnectPolicy(options.reconnect ?? {});
    this._heartbeatMs = positiveOrNull(options.heartbeatMs, DEFAULT_HEARTBEAT_MS, "heartbeatMs");
    this._pongTimeoutMs = positiveOrNull(options.pongTimeoutMs, DEFAULT_PONG_TIMEOUT_MS, "pongTimeoutMs") ?? DEFAULT_PONG_TIMEOUT_MS;
    this._openTimeoutMs = options.openTimeoutMs ?? 10_000;
    this._maxConnectionMs = positiveOrNull(options.maxConnectionMs, GATEWAY_MAX_CONNECTION_MS, "maxConnectionMs");
    this._rotationMarginMs = options.rotationMarginMs ?? DEFAULT_ROTATION_MARGIN_MS;
    this._tokenAttempts = options.tokenAttempts ?? DEFAULT_TOKEN_ATTEMPTS;
    this._random = options.random ?? Math.random;
    this._logger = options.logger ?? { info() {}, warn() {} };
    const answerTimeoutMs = options.answerTimeoutMs === undefined ? DEFAULT_ANSWER_TIMEOUT_MS : options.answerTimeoutMs;
    this._conversation = new Conversation({
      random: this._random,
      policy: this._policy,
      conflictRetries: this._policy.maxAttempts,
      rateLimitRetries: options.rateLimitRetries ?? DEFAULT_RATE_LIMIT_RETRIES,
      unavailableDeadlineMs: options.unavailableDeadlineMs ?? DEFAULT_UNAVAILABLE_DEADLINE_MS,
      answerTimeoutMs,
    });
    this._answerTimeoutMs = answerTimeoutMs;
    if (options.createWebSocket) this._createWebSocket = options.createWebSocket;
    else {
      const WebSocketClass = options.WebSocket ?? globalThis.WebSocket;
      if (!WebSocketClass) throw new TypeError("no WebSocket: pass options.WebSocket (e.g. the ws package's) or options.createWebSocket");
      this._createWebSocket = (target) => new WebSocketClass(target);
    }
    this._life = options.browserEvents === false ? null : browserLife();
    this.state = "initialized";
    this._listeners = new Map();
    if (options.onStateChange) this.on("statechange", (change) => options.onStateChange(change.current, change));
    this._ops = new Map();
    this._nextOp = 1;
    this._topicHandlers = new Map();
    this._ws = null;
    this._retiring = new Set();
    this._epoch = 0; // one per connection made current; stale work checks it
    this._failedAttempts = 0;
    this._refusals = 0;
    this._tokenFailures = 0;
    this._disconnectedAt = null;
    this._retryTimer = null;
    this._wakeTimer = null;
    this._heartbeat = null;
    this._pongTimer = null;
    this._rotationTimer = null;
    this._failure = null;
    this._lifeHandlers = null;
  }

  /** Whether a connection is open now. */
  get connected() {
    return this.state === "connected" && this._ws !== null && this._ws.readyState === OPEN;
  }

  /** Listen to `statechange` ({current, previous, reason, retryInMs}), a state's name, `notification` or `rotated`; returns the function that stops it. */
  on(event, listener) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(listener);
    return () => this.off(event, listener);
  }

  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
  }

  /**
   * Open the first connection. Rejects with a `ConnectionError` and leaves the
   * client `failed` when it cannot (a wrong URL or token fails fast; with a
   * token provider a refused handshake is tried once more with a fresh token).
   * Later drops are retried without end unless the policy says otherwise.
   */
  async connect() {
    if (this.state !== "initialized") throw new Error("StreamerClient.connect() may be called once");
    this._listenToBrowser();
    this._setState("connecting", { reason: null });
    let ws;
    try {
      ws = await this._attempt("connect");
    } catch (firstError) {
      if (this._failure) throw this._failure;
      if (this._provider && firstError.code !== "FORBIDDEN" && firstError.code !== "TOKEN_FAILED") {
        try {
          ws = await this._attempt("refused");
        } catch (error) {
          this._giveUp(error);
          throw error;
        }
      } else {
        this._giveUp(firstError);
        throw firstError;
      }
    }
    if (this._failure) {
      ws.close(1000, "client closed");
      throw this._failure;
    }
    this._install(ws);
  }

  /** Close; everything still awaited rejects with CONNECTION_FAILED. */
  close() {
    if (this.state === "closed" || this.state === "failed") return;
    this._end(new ConnectionError("CONNECTION_FAILED", "the client is closed"), "closed");
  }

  // --- the caller's operations ------------------------------------------------------------

  /**
   * Run `action` and resolve with its result: a sync action's `data`, or the
   * `result` of an async action's COMPLETED `complete`, reporting each new
   * progress to `onProgress` in `seq` order. `id` (default: a new one) is the
   * idempotency key. Rejects with a `StreamerError`, or a TypeError for what
   * the protocol does not allow.
   */
  call(action, payload = {}, { onProgress, onAcknowledged, id, metadata } = {}) {
    return this._operation({ onProgress, onAcknowledged }, (op) => this._conversation.call(op, action, payload, { id, metadata }));
  }

  /** Follow an existing request to its end (its result at once if it has ended). */
  subscribe(requestId, { onProgress } = {}) {
    return this._operation({ onProgress }, (op) => this._conversation.subscribe(op, requestId));
  }

  /** Stop a request's updates on this connection; a `call`/`subscribe` awaiting it rejects with UNSUBSCRIBED. */
  unsubscribe(requestId) {
    return this._operation({}, (op) => this._conversation.unsubscribe(op, requestId));
  }

  /** The request's stored state. */
  status(requestId) {
    return this._operation({}, (op) => this._conversation.status(op, requestId));
  }

  /** Cancel a request and resolve with how it ended: `{requestId, status, result, error}`. */
  cancel(requestId) {
    return this._operation({}, (op) => this._conversation.cancel(op, requestId));
  }

  /** Send `ping`, await `pong`; resolves with the round trip in milliseconds. */
  async ping() {
    const started = Date.now();
    await this._operation({}, (op) => this._conversation.ping(op));
    return Date.now() - started;
  }

  /**
   * Subscribe to a topic of your tenant: `onNotification` gets each of its
   * notifications (`{topic, event, data, timestamp}`), the retained last one
   * first when there is one. Resolves once subscribed; subscribed again after
   * every reconnect (a retained notification already delivered is not
   * delivered again).
   */
  subscribeTopic(topic, onNotification) {
    if (onNotification !== undefined && typeof onNotification !== "function") throw new TypeError("onNotification must be a function");
    return this._operation({}, (op) => {
      this._conversation.subscribeTopic(op, topic);
      if (onNotification) this._topicHandlers.set(topic, onNotification);
    });
  }

  /** Leave a topic: no more of its notifications, here or after a reconnect. */
  unsubscribeTopic(topic) {
    this._topicHandlers.delete(topic);
    return this._operation({}, (op) => this._conversation.unsubscribeTopic(op, topic));
  }

  /** The topics this client is subscribed to. */
  get topics() {
    return this._conversation.topics();
  }

  _operation(handlers, start) {
    return new Promise((resolve, reject) => {
      if (this.state === "initialized") throw new Error("StreamerClient is not connected: call connect() first");
      const op = this._nextOp++;
      this._ops.set(op, { ...handlers, resolve, reject });
      try {
        start(op);
      } catch (error) {
        this._ops.delete(op);
        throw error;
      }
      this._pump();
    });
  }

  // --- carrying out the conversation's outputs --------------------------------------------

  _pump() {
    for (const output of this._conversation.takeOutputs()) {
      switch (output.type) {
        case "send":
          this._sendText(output.text);
          break;
        case "progress":
          this._callback(this._ops.get(output.op)?.onProgress, output.progress);
          break;
        case "acknowledged":
          this._callback(this._ops.get(output.op)?.onAcknowledged, output.acknowledgment);
          break;
        case "resolve":
        case "reject": {
          const pending = this._ops.get(output.op);
          this._ops.delete(output.op);
          if (output.type === "resolve") pending?.resolve(output.value);
          else pending?.reject(output.error);
          break;
        }
        case "notification": {
          const { notification } = output;
          if (notification.topic !== null) this._callback(this._topicHandlers.get(notification.topic), notification);
          this._emit("notification", notification);
          break;
        }
        case "warning":
          this._logger.warn(output.message, output.detail);
          break;
        default:
          break;
      }
    }
    this._retireIfResumed();
    this._scheduleWake();
  }

  _sendText(text) {
    if (!this._ws || this._ws.readyState !== OPEN) return;
    try {
      this._ws.send(text);
    } catch (error) {
      this._logger.info("send failed; it is sent again on reconnect", error);
    }
  }

  _scheduleWake() {
    clearTimeout(this._wakeTimer);
    const at = this._conversation.nextWake();
    if (at === null) return;
    this._wakeTimer = setTimeout(() => {
      this._conversation.tick();
      this._pump();
    }, Math.max(0, at - Date.now()));
    this._wakeTimer.unref?.();
  }

  _callback(callback, value) {
    if (!callback) return;
    try {
      const outcome = callback(value);
      if (outcome && typeof outcome.catch === "function") outcome.catch((error) => this._logger.warn("callback failed", error));
    } catch (error) {
      this._logger.warn("callback failed", error);
    }
  }

  _emit(event, value) {
    for (const listener of [...(this._listeners.get(event) ?? [])]) this._callback(listener, value);
  }

  _setState(state, info = {}) {
    const previous = this.state;
    if (previous === state && state !== "disconnected" && state !== "suspended") return;
    this.state = state;
    const change = { current: state, previous, reason: info.reason ?? null, ...info };
    this._emit("statechange", change);
    this._emit(state, change);
  }

  // --- tokens and sockets -------------------------------------------------------------------

  // A fresh token: the fixed one, or the provider's (TOKEN_FAILED when it throws or answers no string).
  async _token(reason) {
    if (!this._provider) return this._fixedToken;
    let token;
    try {
      token = await this._provider({ reason });
    } catch (error) {
      this._tokenFailures += 1;
      throw new ConnectionError("TOKEN_FAILED", `the token provider failed: ${error?.message ?? error}`, { retryable: this._tokenFailures < this._tokenAttempts });
    }
    if (typeof token !== "string" || !token) {
      this._tokenFailures += 1;
      throw new ConnectionError("TOKEN_FAILED", "the token provider returned no token", { retryable: this._tokenFailures < this._tokenAttempts });
    }
    this._tokenFailures = 0;
    return token;
  }

  // One connection attempt with a fresh token: the open socket, or a ConnectionError.
  // With a provider a refusal is retryable: the next attempt asks for a new
  // token. A browser never sees the handshake's status, so there a close
  // before `open` counts as a possible 401 and the next token is fresh anyway.
  async _attempt(reason) {
    const token = await this._token(reason);
    let ws;
    try {
      ws = await this._open(urlWithToken(this.url, token));
    } catch (error) {
      if (error.code === "UNAUTHORIZED" && this._provider) {
        this._refusals += 1;
        if (this._refusals < this._tokenAttempts) {
          throw new ConnectionError("UNAUTHORIZED", `${error.reason}; asking the token provider for a new token`, { retryable: true, statusCode: 401 });
        }
      }
      throw error;
    }
    this._refusals = 0;
    ws.token = token;
    return ws;
  }

  _open(target) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = this._createWebSocket(target);
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

  // Make `ws` the connection: the conversation resumes on it.
  _install(ws) {
    this._epoch += 1;
    this._ws = ws;
    this._attach(ws);
    this._failedAttempts = 0;
    this._disconnectedAt = null;
    const reconnected = this._epoch > 1;
    this._setState("connected", { reason: null, reconnected });
    this._conversation.opened();
    this._pump();
    this._startHeartbeat();
    this._scheduleRotation(ws);
  }

  _attach(ws) {
    ws.onmessage = (event) => {
      if (ws !== this._ws && !this._retiring.has(ws)) return;
      try {
        this._conversation.receive(decodeData(event.data));
      } catch (error) {
        // One bad message must not stop the reader every caller depends on.
        this._logger.warn("could not handle a server message", error);
      }
      if (ws === this._ws) this._alive();
      this._pump();
    };
    ws.onerror = () => {};
    ws.onclose = (event) => {
      this._retiring.delete(ws);
      if (ws !== this._ws) return;
      this._dropped(new ConnectionError("CONNECTION_FAILED", `connection to ${this.url} dropped (code ${event?.code})`));
    };
  }

  // --- losing and getting the connection back -------------------------------------------------

  _dropped(error) {
    if (this.state === "closed" || this.state === "failed") return;
    this._logger.info(`${error.message}; reconnecting`);
    const ws = this._ws;
    this._ws = null;
    this._epoch += 1;
    if (ws) {
      ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
      try {
        ws.close();
      } catch {
        // already closed
      }
    }
    this._stopConnectionTimers();
    this._conversation.lost();
    this._pump();
    this._disconnectedAt ??= Date.now();
    this._scheduleRetry(error);
  }

  _scheduleRetry(error) {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const next = this._policy.next(this._failedAttempts, Date.now() - this._disconnectedAt, this._random);
    if (next.state === "failed") {
      this._end(new ConnectionError("CONNECTION_LOST", `no connection to ${this.url} for ${this._policy.giveUpAfterMs} ms (last: ${error?.message ?? "none"})`, { retryable: true }), "failed");
      return;
    }
    if (this._life && !this._life.online()) {
      // Retries wait for the browser's `online` event.
      this._setState(next.state, { reason: error, retryInMs: null, attempt: this._failedAttempts + 1 });
      return;
    }
    this._setState(next.state, { reason: error, retryInMs: next.delayMs, attempt: this._failedAttempts + 1 });
    this._retryTimer = setTimeout(() => this._reconnect(), next.delayMs);
  }

  async _reconnect() {
    this._retryTimer = null;
    if (this.state !== "disconnected" && this.state !== "suspended") return;
    const epoch = this._epoch;
    this._setState("connecting", { reason: null, attempt: this._failedAttempts + 1 });
    let ws;
    try {
      ws = await this._attempt("reconnect");
    } catch (error) {
      if (this._epoch !== epoch || this.state !== "connecting") return;
      if (!error.retryable) {
        this._end(error, "failed");
        return;
      }
      this._failedAttempts += 1;
      this._logger.info(`reconnect attempt ${this._failedAttempts} failed: ${error.message}`);
      this._scheduleRetry(error);
      return;
    }
    if (this._epoch !== epoch || this.state !== "connecting") {
      ws.close(1000, "not needed");
      return;
    }
    this._install(ws);
  }

  // Reconnect now (the browser is back online, the page visible again): a fresh backoff.
  _retryNow() {
    if (this.state !== "disconnected" && this.state !== "suspended") return;
    clearTimeout(this._retryTimer);
    this._failedAttempts = 0;
    this._reconnect();
  }

  _end(error, state) {
    this._failure = error;
    clearTimeout(this._retryTimer);
    clearTimeout(this._wakeTimer);
    this._stopConnectionTimers();
    this._stopListeningToBrowser();
    for (const ws of [this._ws, ...this._retiring]) {
      if (ws && ws.readyState <= OPEN) {
        ws.onclose = null;
        try {
          ws.close(1000, "client closed");
        } catch {
          // already closing
        }
      }
    }
    this._ws = null;
    this._retiring.clear();
    this._epoch += 1;
    this._setState(state, { reason: state === "failed" ? error : null });
    this._conversation.close(error);
    this._pump();
    clearTimeout(this._wakeTimer);
  }

  _giveUp(error) {
    if (this.state === "closed" || this.state === "failed") return;
    this._end(error, "failed");
  }

  // --- keepalive -----------------------------------------------------------------------------

  _stopConnectionTimers() {
    clearInterval(this._heartbeat);
    clearTimeout(this._pongTimer);
    clearTimeout(this._rotationTimer);
    this._heartbeat = this._pongTimer = this._rotationTimer = null;
  }

  _startHeartbeat() {
    if (this._heartbeatMs === null) return;
    this._heartbeat = setInterval(() => this.check(), this._heartbeatMs);
    this._heartbeat.unref?.();
  }

  /**
   * Check the connection now: a `ping` that gets no `pong` within
   * `pongTimeoutMs` means it is dead, and the client reconnects. Also run on
   * the heartbeat, and when a page becomes visible again or the browser says
   * it is online.
   */
  check() {
    if (this.state !== "connected" || this._pongTimer) return;
    const epoch = this._epoch;
    this._pongTimer = setTimeout(() => {
      this._pongTimer = null;
      if (this._epoch === epoch && this.state === "connected") {
        this._dropped(new ConnectionError("CONNECTION_FAILED", `no pong within ${this._pongTimeoutMs} ms: the connection is dead`));
      }
    }, this._pongTimeoutMs);
    this._pongTimer.unref?.();
    this.ping().catch(() => {});
  }

  // Any message on the current connection shows it is alive.
  _alive() {
    clearTimeout(this._pongTimer);
    this._pongTimer = null;
  }

  // --- rotation -----------------------------------------------------------------------------

  _scheduleRotation(ws) {
    const delay = rotationDelay({ openedAt: Date.now(), maxConnectionMs: this._maxConnectionMs, expiresAt: tokenExpiry(ws.token), marginMs: this._rotationMarginMs });
    if (delay === null) return;
    this._rotationTimer = setTimeout(() => this._rotate(), delay);
    this._rotationTimer.unref?.();
  }

  // A new connection first, the conversation resumed on it, then the old one
  // closed once every resumed message is answered (or the answer timeout has
  // passed): messages on both meanwhile are handled once, by `seq`.
  async _rotate() {
    this._rotationTimer = null;
    if (this.state !== "connected") return;
    const epoch = this._epoch;
    const old = this._ws;
    let ws;
    try {
      ws = await this._attempt("rotate");
    } catch (error) {
      if (this._epoch !== epoch || this.state !== "connected") return;
      if (!error.retryable) {
        this._end(error, "failed");
        return;
      }
      const wait = this._policy.delay(this._failedAttempts, this._random);
      this._logger.info(`rotation failed (${error.message}); trying again in ${Math.round(wait)} ms`);
      this._rotationTimer = setTimeout(() => this._rotate(), wait);
      this._rotationTimer.unref?.();
      return;
    }
    if (this._epoch !== epoch || this.state !== "connected" || this._ws !== old) {
      ws.close(1000, "not needed");
      return;
    }
    this._retiring.add(old);
    clearInterval(this._heartbeat);
    clearTimeout(this._pongTimer);
    this._heartbeat = this._pongTimer = null;
    this._epoch += 1;
    this._ws = ws;
    this._attach(ws);
    this._conversation.opened();
    this._pump();
    this._startHeartbeat();
    this._scheduleRotation(ws);
    const timer = setTimeout(() => this._retire(old), this._answerTimeoutMs ?? DEFAULT_ANSWER_TIMEOUT_MS);
    timer.unref?.();
    old.retireTimer = timer;
    this._emit("rotated", { reason: ws.token === old.token ? "connection" : "token" });
    this._retireIfResumed();
  }

  _retireIfResumed() {
    if (this._retiring.size === 0 || this._conversation.awaitingAnswers() > 0) return;
    for (const ws of [...this._retiring]) this._retire(ws);
  }

  _retire(ws) {
    if (!this._retiring.delete(ws)) return;
    clearTimeout(ws.retireTimer);
    ws.onmessage = ws.onclose = null;
    ws.onerror = () => {};
    try {
      ws.close(1000, "rotated");
    } catch {
      // already closed
    }
  }

  // --- the browser's life ---------------------------------------------------------------------

  _listenToBrowser() {
    if (!this._life) return;
    const { target, document } = this._life;
    const online = () => {
      if (this.state === "connected") this.check();
      else this._retryNow();
    };
    const offline = () => {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
      if (this.state === "connected") this.check();
    };
    const visibility = () => {
      if (!this._life.visible()) return;
      if (this.state === "connected") this.check();
      else if (this._life.online()) this._retryNow();
    };
    target.addEventListener("online", online);
    target.addEventListener("offline", offline);
    document?.addEventListener("visibilitychange", visibility);
    this._lifeHandlers = { online, offline, visibility };
  }

  _stopListeningToBrowser() {
    if (!this._life || !this._lifeHandlers) return;
    const { target, document } = this._life;
    target.removeEventListener("online", this._lifeHandlers.online);
    target.removeEventListener("offline", this._lifeHandlers.offline);
    document?.removeEventListener("visibilitychange", this._lifeHandlers.visibility);
    this._lifeHandlers = null;
  }
}
