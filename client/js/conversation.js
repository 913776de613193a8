// The client's conversation with Streamer as a sans-I/O state machine: what to
// send, what an incoming message means for the requests, calls and topics it
// tracks, when to resend, what to resume, when to reconnect, rotate or ping.
// No sockets, no timers, no token provider: streamer.js feeds it inputs and
// carries out its outputs, and the shared conversation vectors
// (client/conversation/README.md describes the format) drive it in the tests.
//
//   const machine = new Conversation(options, { now, newId, random });
//   const { io, events, results } = machine.handle(input);
//   machine.nextDeadline(); // the earliest timer: feed {event: "tick", at} then
//
// Inputs and outputs are the vectors' (README), with the options in camelCase.
// The JS client adds: the `on_acknowledged` event, `reason` on `fetch_token`,
// the inputs `{event: "online" | "offline" | "visible" | "check"}` for a
// browser's life, and `{note}` outputs for the logger.

import { ConnectionError, StreamerError } from "./errors.js";
import { checkedAction, checkedId, encode, givenUp, isResendable, newId as defaultNewId, resendWait } from "./protocol.js";
import { CONNECTION_DEFAULTS, backoffDelay, retryPlan, rotationAt, tokenExpiry } from "./reconnect.js";

/** The conversation's options and defaults; the connection's come from reconnect.js. */
export const DEFAULTS = Object.freeze({
  token: null,
  // API Gateway ends a route's integration after 29 s: a message unanswered for longer never will be.
  answerTimeoutMs: 35_000,
  rateLimitRetries: 3,
  unavailableDeadlineMs: 30_000,
  conflictRetries: 8,
  ...CONNECTION_DEFAULTS,
});

const LIVE_STATES = new Set(["connecting", "connected", "disconnected", "suspended"]);

// What a `complete` or a terminal snapshot says about how a request ended, as `cancel` answers it.
function ending(requestId, status, result, error) {
  return status === "COMPLETED" ? { request_id: requestId, status, result } : { request_id: requestId, status, error };
}

// The error a request's `complete` or `response` gives its caller, or null when it succeeded.
function failureOf(m) {
  if (m.type === "response") {
    if (m.success === true) return null;
    const info = m.error ?? { code: "INTERNAL_ERROR", message: "response without an error object" };
    return StreamerError.fromInfo(info, { requestId: m.request_id, requestStatus: "FAILED" });
  }
  if (m.status === "COMPLETED") return null;
  const fallback = { code: m.status === "CANCELLED" ? "CANCELLED" : "INTERNAL_ERROR", message: `request ended ${m.status}` };
  return StreamerError.fromInfo(m.error ?? fallback, { requestId: m.request_id, requestStatus: m.status });
}

// A notification's identity for "is it news": the topic's retained message
// answers every re-subscribe, and a subscribe racing a publish may get it twice.
function sameNotification(a, b) {
  return JSON.stringify([a.timestamp, a.event, a.data]) === JSON.stringify([b.timestamp, b.event, b.data]);
}

export class Conversation {
  /**
   * `options`: DEFAULTS' names. `now()`: the clock in ms; `newId(kind)` with
   * kind "message" or "request"; `random()` in [0, 1) for the jitter.
   */
  constructor(options = {}, { now = Date.now, newId = defaultNewId, random = Math.random } = {}) {
    for (const key of Object.keys(options)) {
      if (!(key in DEFAULTS)) throw new TypeError(`unknown option ${key}`);
    }
    this.options = Object.freeze({ ...DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) });
    const o = this.options;
    for (const key of ["answerTimeoutMs", "pingIntervalMs", "pongTimeoutMs", "maxConnectionMs"]) {
      if (o[key] !== null && !(o[key] > 0)) throw new RangeError(`${key} must be positive or null`);
    }
    for (const key of ["initialDelayMs", "maxDelayMs", "suspendAfterMs", "suspendedRetryMs", "rotateBeforeMs", "unavailableDeadlineMs", "rateLimitRetries", "conflictRetries"]) {
      if (!(o[key] >= 0)) throw new RangeError(`${key} must not be negative`);
    }
    if (!(o.multiplier >= 1)) throw new RangeError("multiplier must be at least 1");
    if (!(o.maxTokenFailures >= 1)) throw new RangeError("maxTokenFailures must be at least 1");
    this._clock = now;
    this._at = null; // the clock while a timer fires
    this._newId = newId;
    this._random = random;
    this.state = "idle";
    this._out = null;
    this._timers = new Set();
    this._conns = new Map(); // number -> {no, token, role: "opening" | "next" | "current" | "retiring" | "closing", ...}
    this._connCount = 0;
    this._current = null;
    this._next = null; // a rotation's connection while it opens
    this._tokenFor = null; // what the awaited token is for: "connect", "reconnect", "rotate"
    this._connected = false; // a connection has been open once
    this._connectHandle = null;
    this._firstRefresh = false;
    this._failedAttempts = 0;
    this._tokenTrouble = 0; // provider failures and 401s in a row
    this._droppedAt = null;
    this._paused = false; // offline: retries wait for `online`
    this._retryTimer = null;
    this._rotationTimer = null;
    this._keepalive = null;
    this._pongTimer = null;
    this._failure = null;
    this._requests = new Map(); // request id -> tracked request, in the order first tracked
    this._aliases = new Map(); // subscribe message id -> request id
    this._calls = new Map(); // message id -> pending system action
    this._topics = new Map(); // topic -> subscription, in subscription order
    this._resumed = new Set(); // owners resumed on a rotation's new connection
    this._unmatched = null;
  }

  /** The earliest timer (ms), or null: feed `{event: "tick", at}` then. */
  nextDeadline() {
    let next = null;
    for (const timer of this._timers) if (next === null || timer.at < next) next = timer.at;
    return next;
  }

  /** The topics followed, in subscription order. */
  topics() {
    return [...this._topics.keys()];
  }

  /** One input; returns what it caused: `{io, events, results, notes}` (notes: for the logger). */
  handle(input) {
    const out = { io: [], events: [], results: [], notes: [] };
    this._out = out;
    try {
      if (input.call !== undefined) this._call(input);
      else if (input.receive !== undefined) this._receive(input.receive, input.conn ?? this._current);
      else if (input.event !== undefined) this._event(input);
      else throw new TypeError(`unknown input ${JSON.stringify(input)}`);
      this._retireIfResumed();
    } finally {
      this._out = null;
    }
    return out;
  }

  // --- outputs, clock, timers ----------------------------------------------------------------

  _now() {
    return this._at ?? this._clock();
  }

  _io(output) {
    this._out.io.push(output);
  }

  _emit(event) {
    this._out.events.push(event);
  }

  _result(handle, outcome) {
    this._out.results.push(outcome.error ? { handle, error: outcome.error } : { handle, ok: outcome.value ?? null });
  }

  _schedule(at, fire) {
    const timer = { at, fire };
    this._timers.add(timer);
    return timer;
  }

  _cancel(timer) {
    if (timer) this._timers.delete(timer);
    return null;
  }

  _tick(at) {
    for (;;) {
      let due = null;
      for (const timer of this._timers) if (timer.at <= at && (due === null || timer.at < due.at)) due = timer;
      if (due === null) break;
      this._timers.delete(due);
      this._at = due.at;
      try {
        due.fire();
      } finally {
        this._at = null;
      }
    }
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit({ event: state, ...extra });
  }

  // --- the application's calls ---------------------------------------------------------------

  _call({ call, args = {}, handle }) {
    switch (call) {
      case "connect":
        return this._connect();
      case "close":
        return this._close();
      case "request":
        return this._request(args, handle);
      case "subscribe":
        return this._subscribe(args.request_id, handle);
      case "unsubscribe":
        return this._unsubscribe(args.request_id, handle);
      case "status":
        return this._systemCall(handle, "status", "status", { requestId: checkedId(args.request_id) });
      case "cancel":
        return this._cancelRequest(args.request_id, handle);
      case "ping":
        return this._systemCall(handle, "ping", "pong", {});
      case "subscribe_topic":
        return this._subscribeTopic(args.topic, handle);
      case "unsubscribe_topic":
        return this._unsubscribeTopic(args.topic, handle);
      default:
        throw new TypeError(`unknown call ${call}`);
    }
  }

  // Why a call cannot be made now, or null.
  _unusable() {
    if (this._failure) return this._failure;
    if (this.state === "idle") return new ConnectionError("CONNECTION_FAILED", "not connected: connect first");
    return null;
  }

  _connect() {
    if (this.state !== "idle") throw new Error("connect may be called once");
    this._connectHandle = "connect";
    this._setState("connecting");
    this._attempt("connect");
  }

  _close() {
    if (!LIVE_STATES.has(this.state) && this.state !== "idle") return;
    this._end("closed", new ConnectionError("CONNECTION_FAILED", "the client is closed"));
  }

  _request({ action, payload = {}, id, metadata, sync_only: syncOnly = false }, handle) {
    checkedAction(action);
    if (payload === null || typeof payload !== "object" || Array.isArray(payload)) throw new TypeError("payload must be an object");
    const fresh = id === undefined || id === null;
    const requestId = fresh ? this._newId("request") : checkedId(id);
    const message = { action, id: requestId, payload };
    if (metadata !== undefined) {
      if (!metadata || typeof metadata !== "object" || !Object.values(metadata).every((v) => typeof v === "string")) {
        throw new TypeError("metadata must map strings to strings");
      }
      message.metadata = metadata;
    }
    encode(message);
    handle ??= requestId;
    const unusable = this._unusable();
    if (unusable) return this._result(handle, { error: unusable });
    const request = this._watch(requestId, handle, syncOnly ? "send" : "call");
    request.pending = message;
    request.fresh = fresh;
    request.firstConn = null;
    this._send(message, request);
    return requestId;
  }

  _subscribe(requestId, handle) {
    checkedId(requestId);
    const unusable = this._unusable();
    if (unusable) return this._result(handle, { error: unusable });
    const request = this._watch(requestId, handle, "subscribe");
    this._send(this._subscribeMessage(request), request);
  }

  _unsubscribe(requestId, handle) {
    this._systemCall(handle, "unsubscribe", "unsubscribed", { requestId: checkedId(requestId) });
  }

  // Cancel: resolves with how the request ended. A running request ends when
  // its worker notices, so this follows the request too and waits for its `complete`.
  _cancelRequest(requestId, handle) {
    checkedId(requestId);
    const unusable = this._unusable();
    if (unusable) return this._result(handle, { error: unusable });
    const cancel = { handle, requestId, done: false };
    const request = this._watch(requestId, handle, "cancel");
    request.watchers.get(handle).cancel = cancel;
    this._send(this._subscribeMessage(request), request);
    this._systemCall(handle, "cancel", "status", { requestId }, cancel);
  }

  _systemCall(handle, action, answer, target, cancel = null) {
    const unusable = this._unusable();
    if (unusable) return this._result(handle, { error: unusable });
    const messageId = this._newId("message");
    const message = { action, id: messageId };
    if (target.requestId !== undefined) message.request_id = target.requestId;
    if (target.topic !== undefined) message.topic = target.topic;
    const call = { handle, messageId, message, answer, target, cancel, refused: new Map(), answerTimer: null, awaiting: null, sentAt: 0 };
    this._calls.set(messageId, call);
    this._send(message, call);
  }

  _subscribeTopic(topic, handle) {
    checkedId(topic, "topic");
    const unusable = this._unusable();
    if (unusable) return this._result(handle, { error: unusable });
    const existing = this._topics.get(topic);
    if (existing) {
      existing.handle = handle;
      if (existing.confirmed) this._result(handle, { value: null });
      else existing.pending.push(handle);
      return;
    }
    const subscription = { topic, handle, pending: [handle], confirmed: false, messageId: null, message: null, last: null, refused: new Map(), answerTimer: null, awaiting: null, sentAt: 0 };
    this._topics.set(topic, subscription);
    this._sendTopic(subscription);
  }

  _sendTopic(subscription) {
    subscription.messageId = this._newId("message");
    subscription.message = { action: "subscribe", id: subscription.messageId, topic: subscription.topic };
    this._send(subscription.message, subscription);
  }

  _unsubscribeTopic(topic, handle) {
    checkedId(topic, "topic");
    const subscription = this._topics.get(topic);
    if (subscription) {
      this._topics.delete(topic);
      subscription.answerTimer = this._cancel(subscription.answerTimer);
      const ended = new StreamerError("UNSUBSCRIBED", `unsubscribed from topic ${topic}`);
      for (const pending of subscription.pending) this._result(pending, { error: ended });
    }
    this._systemCall(handle, "unsubscribe", "unsubscribed", { topic });
  }

  // --- connections ------------------------------------------------------------------------

  _event(input) {
    const conn = this._conns.get(input.conn);
    switch (input.event) {
      case "tick":
        return this._tick(input.at);
      case "token":
        return this._tokenArrived(input.token);
      case "token_failed":
        return this._tokenFailed();
      case "open":
        return conn ? this._opened(conn) : undefined;
      case "close":
        return conn ? this._closed(conn) : undefined;
      case "handshake_refused":
        return conn ? this._refused(conn, input.status) : undefined;
      case "connect_failed":
        return conn ? this._refused(conn, null) : undefined;
      case "online":
        this._paused = false;
        if (this.state === "connected") return this._check();
        return this._retryNow();
      case "offline":
        this._paused = true;
        this._retryTimer = this._cancel(this._retryTimer);
        if (this.state === "connected") this._check();
        return undefined;
      case "visible":
        if (this.state === "connected") return this._check();
        return this._paused ? undefined : this._retryNow();
      case "check":
        return this.state === "connected" ? this._check() : undefined;
      default:
        throw new TypeError(`unknown event ${input.event}`);
    }
  }

  // A connection attempt: a token from the provider first, unless it is fixed.
  _attempt(purpose) {
    if (this.options.token === null) {
      this._tokenFor = purpose;
      this._io({ do: "fetch_token", reason: purpose });
      return;
    }
    this._open(this.options.token, purpose);
  }

  _open(token, purpose) {
    this._connCount += 1;
    const conn = { no: this._connCount, token, role: purpose === "rotate" ? "next" : "opening", openedAt: null, lastReceived: null };
    this._conns.set(conn.no, conn);
    if (purpose === "rotate") this._next = conn.no;
    this._io({ do: "open", conn: conn.no, token });
  }

  _tokenArrived(token) {
    const purpose = this._tokenFor;
    if (purpose === null) return;
    this._tokenFor = null;
    if (typeof token !== "string" || !token) return this._tokenFailed(purpose);
    this._open(token, purpose);
  }

  _tokenFailed(purpose = this._tokenFor) {
    if (purpose === null) return;
    this._tokenFor = null;
    this._tokenTrouble += 1;
    const error = new ConnectionError("TOKEN_FAILED", "the token provider failed", { retryable: false });
    if (!this._connected || this._tokenTrouble >= this.options.maxTokenFailures) return this._fail(error);
    if (purpose === "rotate") return this._rotationFailed();
    this._attemptFailed(error);
  }

  _opened(conn) {
    const now = this._now();
    if (conn.role === "next") return this._switchTo(conn);
    if (conn.role !== "opening") return;
    conn.role = "current";
    conn.openedAt = now;
    conn.lastReceived = now;
    this._current = conn.no;
    this._failedAttempts = 0;
    this._tokenTrouble = 0;
    this._droppedAt = null;
    this._connected = true;
    this._setState("connected");
    if (this._connectHandle !== null) {
      this._result(this._connectHandle, { value: null });
      this._connectHandle = null;
    }
    this._resume(false);
    this._startKeepalive(conn);
    this._scheduleRotation(conn);
  }

  // A rotation's new connection is open: it becomes the current one and the
  // conversation resumes on it; the old one is closed once every resumed
  // message has been answered on the new one (`_retireIfResumed`).
  _switchTo(conn) {
    const now = this._now();
    const old = this._conns.get(this._current);
    this._next = null;
    conn.role = "current";
    conn.openedAt = now;
    conn.lastReceived = now;
    this._current = conn.no;
    this._tokenTrouble = 0;
    if (old) old.role = "retiring";
    this._pongTimer = this._cancel(this._pongTimer);
    this._resume(true);
    this._startKeepalive(conn);
    this._scheduleRotation(conn);
    this._note({ note: "rotated", reason: old && old.token === conn.token ? "connection" : "token" });
  }

  _retireIfResumed() {
    const retiring = [...this._conns.values()].filter((conn) => conn.role === "retiring");
    if (retiring.length === 0) return;
    for (const owner of this._resumed) {
      if (this._stillTracked(owner) && owner.awaiting === this._current) return;
    }
    this._resumed.clear();
    for (const conn of retiring) {
      conn.role = "closing";
      this._io({ do: "close", conn: conn.no });
    }
  }

  _stillTracked(owner) {
    if (owner.requestId !== undefined) return this._requests.get(owner.requestId) === owner;
    if (owner.topic !== undefined) return this._topics.get(owner.topic) === owner;
    return this._calls.get(owner.messageId) === owner;
  }

  _closed(conn) {
    this._conns.delete(conn.no);
    if (conn.role === "opening" || conn.role === "next") return this._refused(conn, null);
    if (conn.role !== "current") return;
    this._dropped(new ConnectionError("CONNECTION_FAILED", `connection ${conn.no} closed`));
  }

  _refused(conn, status) {
    this._conns.delete(conn.no);
    const error = refusal(status);
    if (conn.role === "next") {
      this._next = null;
      if (status === 403) return this._fail(error);
      if (status === 401) {
        if (this.options.token !== null) return this._note({ note: "rotation refused with 401: the fixed token cannot change" });
        this._tokenTrouble += 1;
        if (this._tokenTrouble >= this.options.maxTokenFailures) return this._fail(error);
      }
      return this._rotationFailed();
    }
    if (conn.role !== "opening") return;
    if (!this._connected) {
      if (status === 401 && this.options.token === null && !this._firstRefresh) {
        // The first connect's one second chance: a new token.
        this._firstRefresh = true;
        this._tokenTrouble += 1;
        return this._attempt("connect");
      }
      return this._fail(error);
    }
    if (status === 403) return this._fail(error);
    if (status === 401) {
      if (this.options.token !== null) return this._fail(error);
      this._tokenTrouble += 1;
      if (this._tokenTrouble >= this.options.maxTokenFailures) return this._fail(error);
    }
    this._attemptFailed(error);
  }

  _attemptFailed(error) {
    this._failedAttempts += 1;
    this._scheduleRetry(error);
  }

  // The current connection is gone: everything awaited is sent again on the next one.
  _dropped(error) {
    const conn = this._conns.get(this._current);
    if (conn) {
      this._conns.delete(conn.no);
      this._io({ do: "close", conn: conn.no });
    }
    this._current = null;
    for (const other of [...this._conns.values()]) {
      this._conns.delete(other.no);
      this._io({ do: "close", conn: other.no });
    }
    this._next = null;
    this._tokenFor = null;
    this._stopConnectionTimers();
    this._clearAnswerTimers();
    this._resumed.clear();
    this._droppedAt = this._now();
    this._failedAttempts = 0;
    this._scheduleRetry(error);
  }

  _scheduleRetry(error) {
    this._retryTimer = this._cancel(this._retryTimer);
    const plan = retryPlan(this._failedAttempts, this._now() - this._droppedAt, this.options, this._random);
    if (plan.state === "failed") {
      return this._fail(new ConnectionError("CONNECTION_LOST", `no connection after ${this._failedAttempts} attempts (last: ${error.message})`));
    }
    if (this._paused) {
      this._setState(plan.state, { retry_in_ms: null });
      return;
    }
    this._setState(plan.state, { retry_in_ms: plan.delayMs });
    this._retryTimer = this._schedule(this._now() + plan.delayMs, () => this._retry());
  }

  _retry() {
    this._retryTimer = null;
    if (this.state !== "disconnected" && this.state !== "suspended") return;
    this._setState("connecting");
    this._attempt("reconnect");
  }

  // The browser is back online, or the page visible again: try now, with a fresh backoff.
  _retryNow() {
    if (this.state !== "disconnected" && this.state !== "suspended") return;
    this._retryTimer = this._cancel(this._retryTimer);
    this._failedAttempts = 0;
    this._retry();
  }

  // For good: `failed` (or `closed` by the application); everything awaited ends with `error`.
  _end(state, error) {
    this._failure = error;
    for (const conn of this._conns.values()) this._io({ do: "close", conn: conn.no });
    this._conns.clear();
    this._current = this._next = this._tokenFor = null;
    this._timers.clear();
    this._retryTimer = this._rotationTimer = this._keepalive = this._pongTimer = null;
    this._setState(state, state === "failed" ? { code: error.code } : {});
    if (this._connectHandle !== null) {
      this._result(this._connectHandle, { error });
      this._connectHandle = null;
    }
    for (const request of [...this._requests.values()]) {
      for (const handle of [...request.watchers.keys()]) this._endWatcher(request, handle, { error });
    }
    for (const call of [...this._calls.values()]) this._endCall(call, { error });
    for (const subscription of this._topics.values()) {
      for (const pending of subscription.pending) this._result(pending, { error });
    }
    this._topics.clear();
  }

  _fail(error) {
    this._end("failed", error);
  }

  _note(note) {
    this._out.notes.push(note);
  }

  // --- keepalive and rotation -----------------------------------------------------------------

  _stopConnectionTimers() {
    this._keepalive = this._cancel(this._keepalive);
    this._pongTimer = this._cancel(this._pongTimer);
    this._rotationTimer = this._cancel(this._rotationTimer);
  }

  // A `ping` when nothing was sent for pingIntervalMs (API Gateway closes a
  // connection idle for 10 minutes; a ping frame is not known to count).
  _startKeepalive(conn) {
    this._keepalive = this._cancel(this._keepalive);
    if (this.options.pingIntervalMs === null) return;
    this._keepalive = this._schedule(this._now() + this.options.pingIntervalMs, () => {
      this._keepalive = null;
      this._check();
    });
  }

  // Ping now; if nothing at all arrives within pongTimeoutMs the connection is dead.
  _check() {
    const conn = this._conns.get(this._current);
    if (!conn) return;
    this._sendRaw({ action: "ping", id: this._newId("message") });
    this._startKeepalive(conn);
    if (this._pongTimer === null) {
      this._pongTimer = this._schedule(this._now() + this.options.pongTimeoutMs, () => {
        this._pongTimer = null;
        if (this._current === conn.no) this._dropped(new ConnectionError("CONNECTION_FAILED", `nothing received within ${this.options.pongTimeoutMs} ms of a ping`));
      });
    }
  }

  _scheduleRotation(conn) {
    this._rotationTimer = this._cancel(this._rotationTimer);
    const at = rotationAt({ openedAt: conn.openedAt, maxConnectionMs: this.options.maxConnectionMs, expiresAt: tokenExpiry(conn.token), rotateBeforeMs: this.options.rotateBeforeMs });
    if (at === null) return;
    this._rotationTimer = this._schedule(at, () => this._rotate());
  }

  _rotate() {
    this._rotationTimer = null;
    if (this.state !== "connected" || this._next !== null || this._tokenFor !== null) return;
    this._attempt("rotate");
  }

  // A rotation whose open failed is tried again after the backoff; the old connection serves meanwhile.
  _rotationFailed() {
    const wait = backoffDelay(this._failedAttempts, this.options, this._random);
    this._rotationTimer = this._schedule(this._now() + wait, () => this._rotate());
  }

  // --- sending ----------------------------------------------------------------------------

  // A message on the current connection; nothing while there is none (the
  // next connection's resume sends what is still awaited).
  _sendRaw(message) {
    const conn = this._conns.get(this._current);
    if (!conn || this.state !== "connected") return false;
    this._io({ do: "send", conn: conn.no, message });
    if (this._keepalive) this._keepalive.at = this._now() + this.options.pingIntervalMs;
    return true;
  }

  // Send a message `owner` (a request, a system call, a topic subscription) awaits the answer to.
  _send(message, owner) {
    if (!this._sendRaw(message)) return;
    if (owner.requestId !== undefined && owner.pending === message && owner.firstConn === null) owner.firstConn = this._current;
    owner.awaiting = this._current;
    owner.sentAt = this._now();
    owner.answerTimer = this._cancel(owner.answerTimer);
    if (this.options.answerTimeoutMs !== null) owner.answerTimer = this._schedule(owner.sentAt + this.options.answerTimeoutMs, () => this._noAnswer(owner));
  }

  // The server said something about `owner` on connection `conn`.
  _heard(owner, conn) {
    owner.answerTimer = this._cancel(owner.answerTimer);
    if (owner.awaiting === conn) owner.awaiting = null;
  }

  _clearAnswerTimers() {
    for (const owner of [...this._requests.values(), ...this._calls.values(), ...this._topics.values()]) {
      owner.answerTimer = this._cancel(owner.answerTimer);
      owner.awaiting = null;
    }
    // Resends and conflict repeats wait for the next connection's resume instead.
    this._timers.clear();
  }

  // Everything still awaited, sent (again) on a new connection, in the order
  // tracked: each request (again if unanswered, else `subscribe`), each system
  // call, each topic (a new `subscribe`).
  _resume(rotation) {
    for (const request of this._requests.values()) {
      if (request.pending !== null) {
        if (request.firstConn !== null) request.resent = true;
        this._send(request.pending, request);
      } else {
        this._send(this._subscribeMessage(request), request);
      }
      if (rotation) this._resumed.add(request);
    }
    for (const call of this._calls.values()) {
      this._send(call.message, call);
      if (rotation) this._resumed.add(call);
    }
    for (const subscription of this._topics.values()) {
      this._sendTopic(subscription);
      if (rotation) this._resumed.add(subscription);
    }
  }

  _noAnswer(owner) {
    owner.answerTimer = null;
    let reason = `no answer within ${this.options.answerTimeoutMs} ms`;
    if (this._unmatched && this._unmatched.at >= owner.sentAt) {
      const { info } = this._unmatched;
      reason += `; meanwhile the server sent an error naming no message: ${info?.code}: ${info?.message}`;
    }
    if (owner.topic !== undefined) {
      if (this._topics.get(owner.topic) !== owner) return;
      if (owner.pending.length === 0) return this._note({ note: `topic ${owner.topic} not confirmed: ${reason}` });
      this._topics.delete(owner.topic);
      const error = new StreamerError("NO_ANSWER", reason, { retryable: true });
      for (const pending of owner.pending) this._result(pending, { error });
      return;
    }
    if (owner.messageId !== undefined) {
      if (this._calls.get(owner.messageId) !== owner) return;
      this._endCall(owner, { error: new StreamerError("NO_ANSWER", reason, { retryable: true, requestId: owner.target.requestId ?? null }) });
      return;
    }
    if (this._requests.get(owner.requestId) !== owner) return;
    const error = new StreamerError("NO_ANSWER", reason, { retryable: true, requestId: owner.requestId });
    for (const handle of [...owner.watchers.keys()]) this._endWatcher(owner, handle, { error });
  }

  // --- requests and their watchers ----------------------------------------------------------

  _watch(requestId, handle, kind) {
    let request = this._requests.get(requestId);
    if (!request) {
      // `refused`: per refusing code, {count, since} of the refusals in a row
      // since the server last sent anything else about it.
      request = { requestId, pending: null, fresh: false, firstConn: null, resent: false, lastSeq: 0, messageIds: new Set(), watchers: new Map(), refused: new Map(), answerTimer: null, awaiting: null, sentAt: 0 };
      this._requests.set(requestId, request);
    }
    request.watchers.set(handle, { handle, kind, repeats: 0, cancel: null });
    return request;
  }

  _subscribeMessage(request) {
    const messageId = this._newId("message");
    request.messageIds.add(messageId);
    this._aliases.set(messageId, request.requestId);
    return { action: "subscribe", id: messageId, request_id: request.requestId };
  }

  // End one watcher with `{value}` or `{error}`; the request is forgotten with its last watcher.
  _endWatcher(request, handle, outcome) {
    const watcher = request.watchers.get(handle);
    if (!watcher) return;
    request.watchers.delete(handle);
    if (request.watchers.size === 0 && this._requests.get(request.requestId) === request) {
      request.answerTimer = this._cancel(request.answerTimer);
      this._requests.delete(request.requestId);
      for (const messageId of request.messageIds) this._aliases.delete(messageId);
    }
    if (watcher.cancel) return this._endCancel(watcher.cancel, outcome);
    this._result(handle, outcome);
  }

  _endCancel(cancel, outcome) {
    if (cancel.done) return;
    cancel.done = true;
    const request = this._requests.get(cancel.requestId);
    if (request?.watchers.get(cancel.handle)?.cancel === cancel) {
      request.watchers.get(cancel.handle).cancel = null;
      request.watchers.delete(cancel.handle);
      if (request.watchers.size === 0) {
        request.answerTimer = this._cancel(request.answerTimer);
        this._requests.delete(request.requestId);
        for (const messageId of request.messageIds) this._aliases.delete(messageId);
      }
    }
    for (const call of [...this._calls.values()]) {
      if (call.cancel === cancel) {
        call.answerTimer = this._cancel(call.answerTimer);
        this._calls.delete(call.messageId);
      }
    }
    this._result(cancel.handle, outcome);
  }

  _endCall(call, outcome) {
    call.answerTimer = this._cancel(call.answerTimer);
    this._calls.delete(call.messageId);
    if (call.cancel) {
      if (outcome.error) return this._endCancel(call.cancel, outcome);
      const snapshot = outcome.value;
      if (snapshot && ["COMPLETED", "FAILED", "CANCELLED"].includes(snapshot.status)) {
        this._endCancel(call.cancel, { value: ending(snapshot.request_id, snapshot.status, snapshot.result, snapshot.error) });
      }
      return;
    }
    this._result(call.handle, call.answer === "status" || outcome.error ? outcome : { value: null });
    if (!outcome.error && call.message.action === "unsubscribe" && call.target.requestId !== undefined) {
      const request = this._requests.get(call.target.requestId);
      if (request) {
        const ended = new StreamerError("UNSUBSCRIBED", "unsubscribed", { requestId: call.target.requestId });
        for (const handle of [...request.watchers.keys()]) this._endWatcher(request, handle, { error: ended });
      }
    }
  }

  // --- what the server sends -------------------------------------------------------------------

  _receive(m, connNo) {
    const conn = this._conns.get(connNo);
    if (!conn || conn.role === "closing" || conn.role === "opening" || conn.role === "next") return;
    conn.lastReceived = this._now();
    if (conn.no === this._current) this._pongTimer = this._cancel(this._pongTimer);
    if (!m || typeof m !== "object" || Array.isArray(m)) return;
    const requestId = typeof m.request_id === "string" ? m.request_id : null;
    if (m.type === undefined && typeof m.message === "string") {
      // API Gateway's own answer when a route's integration fails or times out:
      // {"message": "Internal server error", "connectionId", "requestId"}, where
      // requestId is the gateway's, so it names no message of ours.
      return this._refusal(null, { code: "INTERNAL_ERROR", message: m.message, retryable: false }, conn.no);
    }
    switch (m.type) {
      case "pong":
        return this._answer("pong", {}, null, true, conn.no);
      case "status":
        if (m.request && typeof m.request.request_id === "string") this._answer("status", { requestId: m.request.request_id }, m.request, false, conn.no);
        return undefined;
      case "unsubscribed":
        if (typeof m.topic === "string") return this._answer("unsubscribed", { topic: m.topic }, null, false, conn.no);
        return this._answer("unsubscribed", { requestId }, null, requestId === null, conn.no);
      case "subscribed":
        return typeof m.topic === "string" ? this._topicConfirmed(m.topic, conn.no) : undefined;
      case "notification":
        return this._notification(m, conn.no);
      case "error":
        return this._refusal(requestId, m.error, conn.no);
      case "acknowledgment":
      case "response":
        return requestId ? this._deliver(m, conn.no) : undefined;
      case "progress":
        return requestId && Number.isFinite(Number(m.seq)) ? this._deliver(m, conn.no) : undefined;
      case "complete":
        return requestId && typeof m.status === "string" ? this._deliver(m, conn.no) : undefined;
      default:
        // Unknown types are skipped so a newer server can add some.
        return undefined;
    }
  }

  _answer(answer, target, value, onlyOldest, conn) {
    for (const call of [...this._calls.values()]) {
      if (call.answer !== answer) continue;
      if (target.topic !== undefined ? call.target.topic !== target.topic : target.requestId != null && call.target.requestId !== target.requestId) continue;
      this._heard(call, conn);
      this._endCall(call, { value });
      if (onlyOldest) return;
    }
  }

  _topicConfirmed(topic, conn) {
    const subscription = this._topics.get(topic);
    if (!subscription) return;
    this._heard(subscription, conn);
    subscription.refused.clear();
    subscription.confirmed = true;
    const pending = subscription.pending;
    subscription.pending = [];
    for (const handle of pending) this._result(handle, { value: null });
  }

  _notification(m, conn) {
    const topic = typeof m.topic === "string" ? m.topic : null;
    const subscription = topic === null ? undefined : this._topics.get(topic);
    if (subscription) {
      const last = subscription.last;
      const stale = last !== null && (sameNotification(m, last) || (Number.isFinite(m.timestamp) && Number.isFinite(last.timestamp) && m.timestamp < last.timestamp));
      // Delivered before (or as) the answer to subscribe: the subscription holds.
      this._topicConfirmed(topic, conn);
      if (stale) return;
      subscription.last = m;
    }
    this._emit({ event: "notification", notification: m });
    if (subscription) this._emit({ event: "on_notification", handle: subscription.handle, notification: m });
  }

  _refusal(answered, info, conn) {
    if (answered === null) {
      this._note({ note: "server error answering no message", detail: info });
      this._unmatched = { info, at: this._now() };
      return;
    }
    if (isResendable(info)) {
      info = this._resendLater(answered, info, conn);
      if (info === null) return;
    }
    const call = this._calls.get(answered);
    if (call) {
      this._heard(call, conn);
      return this._endCall(call, { error: StreamerError.fromInfo(info, { requestId: call.target.requestId ?? null }) });
    }
    for (const subscription of this._topics.values()) {
      if (subscription.messageId !== answered) continue;
      this._heard(subscription, conn);
      this._topics.delete(subscription.topic);
      const error = StreamerError.fromInfo(info);
      if (subscription.pending.length === 0) this._note({ note: `topic ${subscription.topic} refused on a new connection`, detail: info });
      for (const pending of subscription.pending) this._result(pending, { error });
      return;
    }
    const requestId = this._aliases.get(answered) ?? answered;
    const request = this._requests.get(requestId);
    if (request) {
      this._heard(request, conn);
      const error = StreamerError.fromInfo(info, { requestId });
      for (const watcher of [...request.watchers.values()]) this._refuseWatcher(request, watcher, error);
      return;
    }
    // A server may name the request a system action was about, not the message id.
    for (const pending of [...this._calls.values()]) {
      if (pending.target.requestId === answered) this._endCall(pending, { error: StreamerError.fromInfo(info, { requestId: answered }) });
    }
  }

  _refuseWatcher(request, watcher, error) {
    if ((watcher.kind === "call" || watcher.kind === "send") && error.code === "CONFLICT" && error.retryable && request.resent && watcher.repeats < this.options.conflictRetries) {
      // This client's own repeat after a reconnect met the first run still
      // going (a sync request): ask again until it has answered.
      const wait = backoffDelay(watcher.repeats, this.options, this._random);
      watcher.repeats += 1;
      this._schedule(this._now() + wait, () => {
        if (this._requests.get(request.requestId) === request && request.pending) this._send(request.pending, request);
      });
      return;
    }
    this._endWatcher(request, watcher.handle, { error });
  }

  // A refused message that a later resend may pass (the connection's rate
  // limit, or UNAVAILABLE; nothing was stored, so this is safe): send it again
  // later if `resendWait` says so, and return null; otherwise return the error
  // object its caller gets (saying the client gave up when its resends are over).
  _resendLater(answered, info, conn) {
    let owner;
    let resend;
    const call = this._calls.get(answered);
    const aliased = this._aliases.get(answered);
    const subscription = [...this._topics.values()].find((s) => s.messageId === answered);
    if (call) {
      owner = call;
      resend = () => this._calls.get(answered) === call && this._send(call.message, call);
    } else if (subscription) {
      owner = subscription;
      resend = () => this._topics.get(subscription.topic) === subscription && this._sendTopic(subscription);
    } else if (aliased !== undefined) {
      owner = this._requests.get(aliased);
      resend = () => {
        if (this._requests.get(aliased) !== owner) return;
        this._aliases.delete(answered);
        owner.messageIds.delete(answered);
        this._send(this._subscribeMessage(owner), owner);
      };
    } else {
      owner = this._requests.get(answered);
      if (owner?.pending == null) return info;
      resend = () => this._requests.get(answered) === owner && owner.pending && this._send(owner.pending, owner);
    }
    if (!owner) return info;
    this._heard(owner, conn);
    const now = this._now();
    const { count, since } = owner.refused.get(info.code) ?? { count: 0, since: now };
    const limits = { rateLimitRetries: this.options.rateLimitRetries, unavailableDeadlineMs: this.options.unavailableDeadlineMs };
    const wait = resendWait(info, { count, ms: now - since }, limits, (n) => backoffDelay(n, this.options, this._random));
    if (wait === null) return givenUp(info, { count: count + 1, ms: now - since });
    owner.refused.set(info.code, { count: count + 1, since });
    // Awaited again: a rotation keeps the old connection until the resend is answered.
    owner.awaiting = this._current;
    this._schedule(now + wait, resend);
    return null;
  }

  // An acknowledgment, response, progress or complete about a tracked request.
  _deliver(m, conn) {
    const request = this._requests.get(m.request_id);
    if (!request) return;
    // The server answered about it: a later refusal (e.g. on a resume) starts a fresh count.
    request.refused.clear();
    this._heard(request, conn);
    if (m.type === "progress" || m.type === "complete") {
      if (Number.isInteger(m.seq)) {
        if (m.seq <= request.lastSeq) return;
        request.lastSeq = m.seq;
      }
    }
    if (m.type !== "progress") request.pending = null;
    if (m.type === "acknowledgment" && (!request.fresh || conn !== request.firstConn) && [...request.watchers.values()].some((w) => w.kind !== "send")) {
      // Accepted earlier (an id the application chose may repeat a request) or
      // on another connection: this one is not the owner, so it asks for the updates.
      this._send(this._subscribeMessage(request), request);
    }
    for (const watcher of [...request.watchers.values()]) {
      if (m.type === "progress") {
        if (watcher.kind === "cancel") continue;
        this._emit({ event: "on_progress", handle: watcher.handle, request_id: m.request_id, seq: Number(m.seq), percentage: Number(m.percentage ?? 0), message: String(m.message ?? ""), metadata: m.metadata && typeof m.metadata === "object" ? m.metadata : {}, timestamp: Number.isInteger(m.timestamp) ? m.timestamp : null });
      } else if (m.type === "acknowledgment") {
        if (watcher.kind === "send") {
          this._endWatcher(request, watcher.handle, { error: new StreamerError("NOT_SYNCHRONOUS", `${m.request_id} was accepted to run asynchronously`, { requestId: m.request_id }) });
        } else if (watcher.kind === "call") {
          this._emit({ event: "on_acknowledged", handle: watcher.handle, request_id: m.request_id, estimated_duration_ms: Number.isInteger(m.estimated_duration_ms) ? m.estimated_duration_ms : null });
        }
      } else if (watcher.kind === "cancel") {
        const value = m.type === "complete" ? ending(m.request_id, m.status, m.result, m.error) : ending(m.request_id, m.success === true ? "COMPLETED" : "FAILED", m.data, m.error);
        this._endWatcher(request, watcher.handle, { value });
      } else {
        const error = failureOf(m);
        this._endWatcher(request, watcher.handle, error ? { error } : { value: m.type === "response" ? m.data : m.result });
      }
    }
  }
}

// The error a refused handshake (or an unreachable server, status null) gives.
function refusal(status) {
  if (status === 401) return new ConnectionError("UNAUTHORIZED", "handshake refused with HTTP 401", { retryable: false, statusCode: 401 });
  if (status === 403) return new ConnectionError("FORBIDDEN", "handshake refused with HTTP 403", { retryable: false, statusCode: 403 });
  if (status) return new ConnectionError("CONNECTION_REFUSED", `handshake refused with HTTP ${status}`, { statusCode: status });
  return new ConnectionError("CONNECTION_FAILED", "could not connect");
}
