// Streamer's WebSocket client for browsers and Node 20+: ES modules, no dependencies.
//
// The conversation (conversation.js) decides everything: what to send, what a
// server message means, when to reconnect, rotate or ping. This module is its
// I/O: WebSockets, one timer for the machine's next deadline, the token
// provider, the browser's online/offline/visibility events, and the promises
// and callbacks the application sees.

import { Conversation, DEFAULTS } from "./conversation.js";
import { StreamerError } from "./errors.js";
import { TERMINAL_STATUSES } from "./protocol.js";

export { Conversation, DEFAULTS } from "./conversation.js";
export { ConnectionError, StreamerError } from "./errors.js";
export { MAX_MESSAGE_BYTES, TERMINAL_STATUSES, isValidRequestId, newRequestId } from "./protocol.js";
export { GATEWAY_IDLE_TIMEOUT_MS, GATEWAY_MAX_CONNECTION_MS, rotationAt, tokenExpiry } from "./reconnect.js";

/** The client's version (client/js/package.json's; a test holds them equal). */
export const VERSION = "0.2.0";

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
  NOT_SYNCHRONOUS: "NOT_SYNCHRONOUS",
  CONNECTION_FAILED: "CONNECTION_FAILED",
  CONNECTION_LOST: "CONNECTION_LOST",
  CONNECTION_REFUSED: "CONNECTION_REFUSED",
  TOKEN_FAILED: "TOKEN_FAILED",
  UNSUBSCRIBED: "UNSUBSCRIBED",
});

/** `idle` before `connect()`, then the others; `closed` and `failed` are for good. */
export const CONNECTION_STATES = Object.freeze(["idle", "connecting", "connected", "disconnected", "suspended", "closed", "failed"]);

const OPEN = 1;
const DEFAULT_OPEN_TIMEOUT_MS = 10_000;

/** The URL with `?token=` set: browsers cannot set headers on a WebSocket (and API Gateway reads the query string). */
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

function optionalInt(value) {
  return Number.isInteger(value) ? value : null;
}

// `status`'s answer, the server's request object, as the JS API gives it.
function snapshotOf(r) {
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

// `cancel`'s answer: how the request ended.
function completionOf(value) {
  const error = value.status === "COMPLETED" ? null : StreamerError.fromInfo(value.error ?? { code: value.status, message: `request ended ${value.status}` }, { requestId: value.request_id, requestStatus: value.status });
  return { requestId: value.request_id, status: value.status, result: value.status === "COMPLETED" ? value.result : undefined, error };
}

// The machine's options from the client's (the rest are the driver's own).
function machineOptions(options) {
  return Object.fromEntries(Object.keys(DEFAULTS).filter((key) => key !== "token" && options[key] !== undefined).map((key) => [key, options[key]]));
}

const DRIVER_OPTIONS = new Set(["WebSocket", "createWebSocket", "openTimeoutMs", "random", "logger", "onStateChange", "browserEvents"]);

/**
 * A connection to Streamer that runs requests, follows their progress and
 * delivers notifications, across reconnects, token renewals and rotations.
 *
 *   const client = new StreamerClient("wss://.../prod", async () => fetchToken());
 *   await client.connect();
 *   const result = await client.call("generate_report", { pages: 5 }, { onProgress: (p) => console.log(p.percentage) });
 *
 * `token` is a string or an async function returning one (called before every
 * connection). The options are README.md's.
 */
export class StreamerClient {
  constructor(url, token, options = {}) {
    if (typeof token === "function") this._provider = token;
    else if (typeof token !== "string" || !token) throw new TypeError("a token (a string, or an async function that returns one) is required");
    for (const key of Object.keys(options)) {
      if (!DRIVER_OPTIONS.has(key) && !(key in DEFAULTS && key !== "token")) throw new TypeError(`unknown option ${key}`);
    }
    new URL(url);
    this.url = url;
    this._machine = new Conversation({ ...machineOptions(options), token: typeof token === "string" ? token : null }, { random: options.random ?? Math.random });
    if (options.createWebSocket) this._createWebSocket = options.createWebSocket;
    else {
      const WebSocketClass = options.WebSocket ?? globalThis.WebSocket;
      if (!WebSocketClass) throw new TypeError("no WebSocket: pass options.WebSocket (e.g. the ws package's) or options.createWebSocket");
      this._createWebSocket = (target) => new WebSocketClass(target);
    }
    this._openTimeoutMs = options.openTimeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS;
    this._logger = options.logger ?? { info() {}, warn() {} };
    this._browser = options.browserEvents === false ? null : browserLife();
    this._listeners = new Map();
    if (options.onStateChange) this.on("statechange", (change) => options.onStateChange(change.current, change));
    this._ops = new Map(); // handle -> {kind, resolve, reject, onProgress, onAcknowledged, started}
    this._nextHandle = 1;
    this._topicHandlers = new Map(); // subscribe_topic handle -> onNotification
    this._sockets = new Map(); // connection number -> WebSocket
    this._timer = null;
    this._unlisten = null;
  }

  /** `idle`, `connecting`, `connected`, `disconnected`, `suspended`, `closed` or `failed`. */
  get state() {
    return this._machine.state;
  }

  /** Whether a connection is open now. */
  get connected() {
    return this.state === "connected";
  }

  /** The topics this client follows. */
  get topics() {
    return this._machine.topics();
  }

  /**
   * Listen to `statechange` ({current, previous, retryInMs, code}), a state's
   * name, `notification` (every notification, topic's or user's) or `rotated`
   * ({reason: "connection" | "token"}); returns the function that stops it.
   */
  on(event, listener) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(listener);
    return () => this.off(event, listener);
  }

  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
  }

  /**
   * Open the first connection. Rejects with a `ConnectionError` (and the
   * client is `failed`) when it cannot: the first connect is not retried, so a
   * wrong URL or token fails fast; a token provider gets one more try after a
   * 401. Once connected, drops are retried without end by default.
   */
  connect() {
    if (this.state !== "idle") return Promise.reject(new Error("StreamerClient.connect() may be called once"));
    return new Promise((resolve, reject) => {
      this._ops.set("connect", { kind: "connect", resolve, reject });
      this._listenToBrowser();
      try {
        this._input({ call: "connect" });
      } catch (error) {
        this._ops.delete("connect");
        throw error;
      }
    });
  }

  /** Close; everything still awaited rejects with CONNECTION_FAILED. */
  close() {
    this._input({ call: "close" });
  }

  /**
   * Check the connection now: a `ping`, and if nothing arrives within
   * `pongTimeoutMs` the connection is dead and replaced. The keepalive and the
   * browser's `online` and `visibilitychange` events do the same.
   */
  check() {
    this._input({ event: "check" });
  }

  // --- the application's operations ------------------------------------------------------------

  /**
   * Run `action` and resolve with its result: a sync action's `data`, or the
   * `result` of an async action's COMPLETED `complete`, reporting each new
   * progress to `onProgress` in `seq` order. `id` (default: a new one) is the
   * idempotency key. Rejects with a `StreamerError`, or a TypeError for what
   * the protocol does not allow.
   */
  call(action, payload = {}, { onProgress, onAcknowledged, id, metadata } = {}) {
    return this._operation("request", { onProgress, onAcknowledged }, { action, payload, id, metadata });
  }

  /** Run a sync action: its `data`; NOT_SYNCHRONOUS when the server accepts it to run asynchronously. */
  send(action, payload = {}, { id, metadata } = {}) {
    return this._operation("request", {}, { action, payload, id, metadata, sync_only: true });
  }

  /** Follow an existing request to its end (its result at once if it has ended). */
  subscribe(requestId, { onProgress } = {}) {
    return this._operation("subscribe", { onProgress }, { request_id: requestId });
  }

  /** Stop a request's updates here; a `call`/`subscribe` awaiting it rejects with UNSUBSCRIBED. */
  async unsubscribe(requestId) {
    await this._operation("unsubscribe", {}, { request_id: requestId });
  }

  /** The request's stored state. */
  status(requestId) {
    return this._operation("status", {}, { request_id: requestId });
  }

  /** Cancel a request and resolve with how it ended: `{requestId, status, result, error}`. */
  cancel(requestId) {
    return this._operation("cancel", {}, { request_id: requestId });
  }

  /** Send `ping`, await `pong`; resolves with the round trip in milliseconds. */
  ping() {
    return this._operation("ping", {}, undefined);
  }

  /**
   * Follow a topic of your tenant: `onNotification` gets each of its
   * notifications as the server sends them (`{type, topic, event, data,
   * timestamp}`), the retained last one first when there is one. Resolves once
   * subscribed. Subscribed again after every reconnect; a notification already
   * delivered is not delivered again.
   */
  async subscribeTopic(topic, onNotification) {
    if (onNotification !== undefined && typeof onNotification !== "function") throw new TypeError("onNotification must be a function");
    await this._operation("subscribe_topic", { onNotification }, { topic });
  }

  /** Stop following a topic, here and after any reconnect. */
  async unsubscribeTopic(topic) {
    for (const [handle, entry] of this._topicHandlers) if (entry.topic === topic) this._topicHandlers.delete(handle);
    await this._operation("unsubscribe_topic", {}, { topic });
  }

  _operation(call, handlers, args) {
    return new Promise((resolve, reject) => {
      const handle = this._nextHandle++;
      this._ops.set(handle, { kind: call, ...handlers, resolve, reject, started: Date.now() });
      if (call === "subscribe_topic" && handlers.onNotification) {
        for (const [other, entry] of this._topicHandlers) if (entry.topic === args.topic) this._topicHandlers.delete(other);
        this._topicHandlers.set(handle, { topic: args.topic, onNotification: handlers.onNotification });
      }
      try {
        this._input({ call, args, handle });
      } catch (error) {
        this._ops.delete(handle);
        if (call === "subscribe_topic") this._topicHandlers.delete(handle);
        throw error;
      }
    });
  }

  // --- driving the machine ---------------------------------------------------------------------

  _input(input) {
    const out = this._machine.handle(input);
    for (const note of out.notes) this._note(note);
    for (const io of out.io) this._do(io);
    for (const event of out.events) this._event(event);
    for (const result of out.results) this._settle(result);
    this._schedule();
  }

  _schedule() {
    clearTimeout(this._timer);
    this._timer = null;
    const at = this._machine.nextDeadline();
    if (at === null) return;
    this._timer = setTimeout(() => {
      this._timer = null;
      this._input({ event: "tick", at: Date.now() });
    }, Math.max(0, at - Date.now()));
  }

  _do(io) {
    switch (io.do) {
      case "fetch_token":
        return this._fetchToken(io.reason);
      case "open":
        return this._open(io.conn, io.token);
      case "send": {
        const ws = this._sockets.get(io.conn);
        if (!ws || ws.readyState !== OPEN) return undefined;
        try {
          ws.send(JSON.stringify(io.message));
        } catch (error) {
          // The socket is going: its close event reconnects, and the resume sends this again.
          this._logger.info("send failed", error);
        }
        return undefined;
      }
      case "close": {
        const ws = this._sockets.get(io.conn);
        this._sockets.delete(io.conn);
        if (ws) {
          ws.onmessage = ws.onclose = ws.onopen = null;
          ws.onerror = () => {};
          try {
            ws.close(1000, "client closed");
          } catch {
            // never opened
          }
        }
        return undefined;
      }
      default:
        return undefined;
    }
  }

  _fetchToken(reason) {
    Promise.resolve()
      .then(() => this._provider({ reason }))
      .then(
        (token) => this._input(typeof token === "string" && token ? { event: "token", token } : { event: "token_failed" }),
        (error) => {
          this._logger.warn("the token provider failed", error);
          this._input({ event: "token_failed" });
        },
      );
  }

  // Open connection `conn`. Browsers never say why a handshake failed: a
  // socket that closes before it opens is `connect_failed` there, and the ws
  // package's "Unexpected server response: 401" is `handshake_refused`. A
  // token provider is asked before every connection, so a browser gets a new
  // token on the next attempt without knowing the status.
  _open(conn, token) {
    let ws;
    try {
      ws = this._createWebSocket(urlWithToken(this.url, token));
    } catch (error) {
      this._logger.warn(`could not connect to ${this.url}`, error);
      queueMicrotask(() => this._input({ event: "connect_failed", conn }));
      return;
    }
    this._sockets.set(conn, ws);
    let opened = false;
    let status = null;
    const timer = setTimeout(() => {
      if (opened || this._sockets.get(conn) !== ws) return;
      this._sockets.delete(conn);
      ws.onopen = ws.onclose = ws.onmessage = null;
      try {
        ws.close();
      } catch {
        // never opened
      }
      this._input({ event: "connect_failed", conn });
    }, this._openTimeoutMs);
    ws.onopen = () => {
      opened = true;
      clearTimeout(timer);
      if (this._sockets.get(conn) === ws) this._input({ event: "open", conn });
    };
    ws.onerror = (event) => {
      const text = String(event?.message ?? event?.error?.message ?? "");
      const match = /Unexpected server response: (\d{3})/.exec(text);
      if (match) status = Number(match[1]);
    };
    ws.onclose = () => {
      clearTimeout(timer);
      if (this._sockets.get(conn) !== ws) return;
      this._sockets.delete(conn);
      if (opened) this._input({ event: "close", conn });
      else if (status !== null) this._input({ event: "handshake_refused", conn, status });
      else this._input({ event: "connect_failed", conn });
    };
    ws.onmessage = (event) => {
      if (this._sockets.get(conn) !== ws) return;
      let message;
      try {
        message = JSON.parse(decodeData(event.data));
      } catch {
        this._logger.warn("a server message that is not JSON", String(event.data).slice(0, 200));
        return;
      }
      this._input({ receive: message, conn });
    };
  }

  _event(event) {
    switch (event.event) {
      case "on_progress": {
        const op = this._ops.get(event.handle);
        const { request_id: requestId, seq, percentage, message, metadata, timestamp } = event;
        return this._callback(op?.onProgress, { requestId, seq, percentage, message, metadata, timestamp });
      }
      case "on_acknowledged":
        return this._callback(this._ops.get(event.handle)?.onAcknowledged, { type: "acknowledgment", requestId: event.request_id, estimatedDurationMs: event.estimated_duration_ms });
      case "notification":
        return this._emit("notification", event.notification);
      case "on_notification":
        return this._callback(this._topicHandlers.get(event.handle)?.onNotification, event.notification);
      default:
        return this._stateChanged(event);
    }
  }

  _stateChanged({ event: state, retry_in_ms: retryInMs, code }) {
    const change = { current: state, previous: this._lastState ?? "idle", retryInMs: retryInMs ?? null, code: code ?? null };
    this._lastState = state;
    if (state === "closed" || state === "failed") {
      clearTimeout(this._timer);
      this._stopListeningToBrowser();
    }
    this._emit("statechange", change);
    this._emit(state, change);
  }

  _settle(result) {
    const op = this._ops.get(result.handle);
    if (!op) return;
    this._ops.delete(result.handle);
    if (result.error) {
      if (op.kind === "subscribe_topic") this._topicHandlers.delete(result.handle);
      op.reject(result.error);
      return;
    }
    if (op.kind === "status") op.resolve(snapshotOf(result.ok));
    else if (op.kind === "cancel") op.resolve(completionOf(result.ok));
    else if (op.kind === "ping") op.resolve(Date.now() - op.started);
    else op.resolve(result.ok ?? undefined);
  }

  _note(note) {
    if (note.note === "rotated") this._emit("rotated", { reason: note.reason });
    this._logger.info(note.note, note.detail ?? "");
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

  // --- the browser's life ------------------------------------------------------------------

  _listenToBrowser() {
    if (!this._browser || this._unlisten) return;
    const { window, document } = this._browser;
    const online = () => this._input({ event: "online" });
    const offline = () => this._input({ event: "offline" });
    const visibility = () => {
      if (document.visibilityState === "visible") this._input({ event: "visible" });
    };
    window.addEventListener("online", online);
    window.addEventListener("offline", offline);
    document?.addEventListener("visibilitychange", visibility);
    this._unlisten = () => {
      window.removeEventListener("online", online);
      window.removeEventListener("offline", offline);
      document?.removeEventListener("visibilitychange", visibility);
    };
    if (globalThis.navigator?.onLine === false) this._input({ event: "offline" });
  }

  _stopListeningToBrowser() {
    this._unlisten?.();
    this._unlisten = null;
  }
}

// The page's window and document, when there are any (not in Node).
function browserLife() {
  const window = globalThis.window;
  if (!window || typeof window.addEventListener !== "function") return null;
  return { window, document: globalThis.document ?? null };
}
