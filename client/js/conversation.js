// The client's conversation with Streamer as a sans-I/O state machine: what to
// send, what an incoming message means for the requests, calls and topics it
// tracks, when to resend, what to resume, when to reconnect, rotate or ping.
// No sockets, no timers, no token provider: streamer.js feeds it inputs and
// carries out its outputs, and the shared conversation vectors
// (client/conversation/README.md describes the format) drive it in the tests.
// This module is the connection's half (states, tokens, reconnects, keepalive,
// rotation); tracking.js is the other (requests, calls, topics, answers).
//
//   const machine = new Conversation(options, { now, newId, random });
//   const { io, events, results } = machine.handle(input);
//   machine.nextDeadline(); // the earliest timer: feed {event: "tick", at} then
//
// Inputs and outputs are the vectors' (README), with the options in camelCase.
// The JS client adds: the `on_acknowledged` event, `reason` on `fetch_token`,
// the inputs `{event: "online" | "offline" | "visible" | "check"}` for a
// browser's life, and `{note}` outputs for the logger.

import { ConnectionError } from "./errors.js";
import { newId as defaultNewId } from "./protocol.js";
import { CONNECTION_DEFAULTS, backoffDelay, retryPlan, rotationAt, tokenExpiry } from "./reconnect.js";
import { Tracker } from "./tracking.js";

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
    this._rotationFailures = 0;
    this._tokenTrouble = 0; // provider failures and 401s in a row
    this._droppedAt = null;
    this._paused = false; // offline: retries wait for `online`
    this._retryTimer = null;
    this._rotationTimer = null;
    this._keepalive = null;
    this._pongTimer = null;
    this._failure = null;
    this._resumed = []; // what a rotation's new connection resumed
    this._tracker = new Tracker({
      options: this.options,
      now: () => this._now(),
      newId: (kind) => this._newId(kind),
      random: () => this._random(),
      send: (message) => (this._sendRaw(message) ? this._current : null),
      current: () => this._current,
      result: (handle, outcome) => this._result(handle, outcome),
      emit: (event) => this._emit(event),
      note: (note) => this._note(note),
      schedule: (at, fire) => this._schedule(at, fire),
      cancel: (timer) => this._cancel(timer),
      unusable: () => this._unusable(),
    });
  }

  /** The earliest timer (ms), or null: feed `{event: "tick", at}` then. */
  nextDeadline() {
    let next = null;
    for (const timer of this._timers) if (next === null || timer.at < next) next = timer.at;
    return next;
  }

  /** The topics followed, in subscription order. */
  topics() {
    return this._tracker.topics();
  }

  /** One input; returns what it caused: `{io, events, results, notes}` (notes: for the logger). */
  handle(input) {
    const out = { io: [], events: [], results: [], notes: [] };
    this._out = out;
    try {
      if (input.call !== undefined) this._call(input);
      else if (input.receive !== undefined) this._received(input.receive, input.conn ?? this._current);
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
        return this._tracker.request(args, handle);
      case "subscribe":
        return this._tracker.subscribe(args.request_id, handle);
      case "unsubscribe":
        return this._tracker.unsubscribe(args.request_id, handle);
      case "status":
        return this._tracker.status(args.request_id, handle);
      case "cancel":
        return this._tracker.cancel(args.request_id, handle);
      case "ping":
        return this._tracker.ping(handle);
      case "subscribe_topic":
        return this._tracker.subscribeTopic(args.topic, handle);
      case "unsubscribe_topic":
        return this._tracker.unsubscribeTopic(args.topic, handle);
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
    const closed = new ConnectionError("CONNECTION_FAILED", "the client is closed");
    if (this.state === "failed") {
      // Nothing is left to end; from now on calls are refused as closed.
      this._failure = closed;
      this._setState("closed");
      return;
    }
    if (!LIVE_STATES.has(this.state) && this.state !== "idle") return;
    this._end("closed", closed);
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
    // A rotation's failure leaves the old connection serving: try again later.
    if (purpose === "rotate") return this._rotationFailed();
    this._tokenTrouble += 1;
    const error = new ConnectionError("TOKEN_FAILED", "the token provider failed", { retryable: false });
    if (!this._connected || this._tokenTrouble >= this.options.maxTokenFailures) return this._fail(error);
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
    // A connection opened: the network is there, whatever `offline` said before.
    this._paused = false;
    this._connected = true;
    this._setState("connected");
    if (this._connectHandle !== null) {
      this._result(this._connectHandle, { value: null });
      this._connectHandle = null;
    }
    this._tracker.resume();
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
    this._rotationFailures = 0;
    this._resumed = this._tracker.resume();
    this._startKeepalive(conn);
    this._scheduleRotation(conn);
    this._note({ note: "rotated", reason: old && old.token === conn.token ? "connection" : "token" });
  }

  _retireIfResumed() {
    const retiring = [...this._conns.values()].filter((conn) => conn.role === "retiring");
    if (retiring.length === 0) return;
    if (this._resumed.some((owner) => this._tracker.awaits(owner, this._current))) return;
    this._resumed = [];
    for (const conn of retiring) {
      conn.role = "closing";
      this._io({ do: "close", conn: conn.no });
    }
  }

  _closed(conn) {
    this._conns.delete(conn.no);
    if (conn.role === "opening" || conn.role === "next") return this._refused(conn, null);
    if (conn.role !== "current") return;
    const old = [...this._conns.values()].find((other) => other.role === "retiring");
    if (old) return this._fallBackTo(old);
    this._dropped(new ConnectionError("CONNECTION_FAILED", `connection ${conn.no} closed`));
  }

  // A rotation's new connection dropped before the old one was closed: the
  // old one serves again (everything awaited resumed on it), and the rotation
  // is tried again after the backoff.
  _fallBackTo(old) {
    this._stopConnectionTimers();
    this._timers.clear();
    this._tracker.connectionLost();
    this._resumed = [];
    old.role = "current";
    this._current = old.no;
    this._tracker.resume();
    this._startKeepalive(old);
    this._rotationFailed();
  }

  _refused(conn, status) {
    this._conns.delete(conn.no);
    const error = refusal(status);
    if (conn.role === "next") {
      // The old connection serves on; only a 403 (the tenant is not allowed) ends it.
      this._next = null;
      if (status === 403) return this._fail(error);
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
    // Answer timeouts, resends and repeats: the next connection's resume sends again.
    this._timers.clear();
    this._tracker.connectionLost();
    this._resumed = [];
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
    this._tracker.failAll(error);
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
  // A rotation that failed is tried again after the backoff for the rotation
  // failures in a row; the old connection serves meanwhile.
  _rotationFailed() {
    const wait = backoffDelay(this._rotationFailures, this.options, this._random);
    this._rotationFailures += 1;
    this._rotationTimer = this._cancel(this._rotationTimer);
    this._rotationTimer = this._schedule(this._now() + wait, () => this._rotate());
  }

  // --- messages -----------------------------------------------------------------------------

  // A server message on connection `connNo`: anything at all shows it alive;
  // what it means is the tracker's. Nothing from a connection being closed.
  _received(m, connNo) {
    const conn = this._conns.get(connNo);
    if (!conn || conn.role === "closing" || conn.role === "opening" || conn.role === "next") return;
    conn.lastReceived = this._now();
    if (conn.no === this._current) this._pongTimer = this._cancel(this._pongTimer);
    this._tracker.receive(m, conn.no);
  }

  // A message on the current connection; false while there is none.
  _sendRaw(message) {
    const conn = this._conns.get(this._current);
    if (!conn || this.state !== "connected") return false;
    this._io({ do: "send", conn: conn.no, message });
    if (this._keepalive) this._keepalive.at = this._now() + this.options.pingIntervalMs;
    return true;
  }
}

// The error a refused handshake (or an unreachable server, status null) gives.
function refusal(status) {
  if (status === 401) return new ConnectionError("UNAUTHORIZED", "handshake refused with HTTP 401", { retryable: false, statusCode: 401 });
  if (status === 403) return new ConnectionError("FORBIDDEN", "handshake refused with HTTP 403", { retryable: false, statusCode: 403 });
  if (status) return new ConnectionError("CONNECTION_REFUSED", `handshake refused with HTTP ${status}`, { statusCode: status });
  return new ConnectionError("CONNECTION_FAILED", "could not connect");
}
