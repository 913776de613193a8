// The conversation with a Streamer server, without I/O: what to send, what an
// incoming message means for what the caller awaits, when to send again, what
// to resume on a new connection. No sockets and no timers: the WebSocket layer
// (streamer.js) feeds it inputs and carries out its outputs, and the shared
// conversation vectors (client/conversation/vectors) drive it in the tests.
//
// Inputs: the caller's operations (`call`, `subscribe`, `unsubscribe`,
// `status`, `cancel`, `ping`, `subscribeTopic`, `unsubscribeTopic`, each named
// by an `op` key the caller chooses), `opened()` / `lost()` for the
// connection, `receive(text)` for a server message, `tick()` when the time
// `nextWake()` named has come, and `close(error)`.
//
// Outputs (`takeOutputs()`), in order:
//   {type: "send", message, text}                 a message for the open connection
//   {type: "progress", op, progress}              a call's or subscribe's new progress
//   {type: "acknowledged", op, acknowledgment}    a call's request was accepted and stored
//   {type: "resolve", op, value}                  the operation's answer
//   {type: "reject", op, error}                   a StreamerError
//   {type: "notification", notification}          a topic's or the user's notification
//   {type: "warning", message, detail}            for the logger

import { StreamerError } from "./errors.js";

/** The gateway closes the connection (1009) on a bigger message; the client refuses to send one. */
export const MAX_MESSAGE_BYTES = 128 * 1024;

/** How long a message answered UNAVAILABLE keeps being sent again, as the Python client's. */
export const DEFAULT_UNAVAILABLE_DEADLINE_MS = 30_000;

/** API Gateway ends a route's integration after 29 s: a message unanswered for longer never will be. */
export const DEFAULT_ANSWER_TIMEOUT_MS = 35_000;

export const DEFAULT_RATE_LIMIT_RETRIES = 3;

export const TERMINAL_STATUSES = Object.freeze(["COMPLETED", "FAILED", "CANCELLED"]);

// The least wait before sending a refused message again, whatever the server says.
const MIN_RESEND_WAIT_MS = 250;

const ACTION_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const ID_RE = /^[A-Za-z0-9_.:-]{1,128}$/;
const encoder = new TextEncoder();

/** A fresh request id within the protocol's `id` rules (`js-` and 32 hex digits). */
export function newRequestId(prefix = "js") {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** Whether `value` is 1-128 characters of `[A-Za-z0-9_.:-]` (request ids and topic names). */
export function isValidRequestId(value) {
  return typeof value === "string" && ID_RE.test(value);
}

function checkedId(value, what = "request id") {
  if (!isValidRequestId(value)) throw new TypeError(`${what} must be 1-128 characters of [A-Za-z0-9_.:-]: ${JSON.stringify(value)}`);
  return value;
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

// --- what a server message says ---

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
  const fallback = { code: status === "CANCELLED" ? "CANCELLED" : "INTERNAL_ERROR", message: `request ended ${status}` };
  return {
    requestId: m.request_id,
    seq: optionalInt(m.seq),
    status,
    result: status === "COMPLETED" ? m.result : undefined,
    error: status === "COMPLETED" ? null : StreamerError.fromInfo(m.error ?? fallback, { requestId: m.request_id, requestStatus: status }),
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

function parseNotification(m) {
  return {
    topic: typeof m.topic === "string" ? m.topic : null,
    event: String(m.event ?? ""),
    data: m.data ?? null,
    timestamp: optionalInt(m.timestamp),
  };
}

// What a request's answer means for its caller: a value, or a StreamerError to throw.
function outcomeOf(event) {
  if (event.type === "response") {
    if (event.success) return { value: event.data };
    const info = event.error ?? { code: "INTERNAL_ERROR", message: "response without an error object" };
    return { error: StreamerError.fromInfo(info, { requestId: event.requestId, requestStatus: "FAILED" }) };
  }
  if (event.status === "COMPLETED") return { value: event.result };
  return { error: event.error };
}

// The same notification again (a topic's retained message, answered to each
// re-subscribe after a reconnect, or a subscribe racing a publish): not newer
// than the last one seen, or equal to it.
function notificationKey(n) {
  return JSON.stringify([n.timestamp, n.event, n.data]);
}

/**
 * The client's side of the protocol, fed by the WebSocket layer.
 *
 * Options: `now()` (ms) and `random()` for the clock and the jitter,
 * `newId(prefix)` for message and request ids, `policy` (`delay(attempt,
 * random)`, the backoff of resends), `conflictRetries`, `rateLimitRetries`,
 * `unavailableDeadlineMs`, `answerTimeoutMs` (null: no answer timeout).
 */
export class Conversation {
  constructor({
    now = Date.now,
    random = Math.random,
    newId = newRequestId,
    policy,
    conflictRetries = 8,
    rateLimitRetries = DEFAULT_RATE_LIMIT_RETRIES,
    unavailableDeadlineMs = DEFAULT_UNAVAILABLE_DEADLINE_MS,
    answerTimeoutMs = DEFAULT_ANSWER_TIMEOUT_MS,
  } = {}) {
    if (!policy || typeof policy.delay !== "function") throw new TypeError("a backoff policy with delay(attempt, random) is required");
    if (!(unavailableDeadlineMs >= 0)) throw new RangeError("unavailableDeadlineMs must not be negative");
    if (answerTimeoutMs !== null && !(answerTimeoutMs > 0)) throw new RangeError("answerTimeoutMs must be positive or null");
    this._now = now;
    this._random = random;
    this._newId = newId;
    this._policy = policy;
    this._conflictRetries = conflictRetries;
    this._limits = { rateLimitRetries, unavailableDeadlineMs, policy };
    this._answerTimeoutMs = answerTimeoutMs;
    this._open = false;
    this._generation = 0;
    this._failure = null;
    this._outputs = [];
    this._timers = new Set();
    this._requests = new Map(); // request id -> tracked request
    this._aliases = new Map(); // subscribe message id -> request id
    this._calls = new Map(); // message id -> pending system action
    this._topics = new Map(); // topic -> subscription
    this._unmatched = null;
  }

  /** What to do now, in order; each output is returned once. */
  takeOutputs() {
    const outputs = this._outputs;
    this._outputs = [];
    return outputs;
  }

  /** When `tick()` has something to do (ms, the clock's), or null. */
  nextWake() {
    let next = null;
    for (const timer of this._timers) if (next === null || timer.at < next) next = timer.at;
    return next;
  }

  /** How many sent messages await their answer (a rotation closes the old connection once none do). */
  awaitingAnswers() {
    let count = 0;
    for (const timer of this._timers) if (timer.answer) count += 1;
    return count;
  }

  /** The topics subscribed or being subscribed, in order. */
  topics() {
    return [...this._topics.keys()];
  }

  // --- the caller's operations ---------------------------------------------------------

  /**
   * Run `action`: resolves `op` with a sync action's `data` or an async
   * action's `result`, with progress and acknowledgment outputs on the way.
   * Returns the request id. Throws a TypeError (or PAYLOAD_TOO_LARGE) for what
   * the protocol does not allow, and the failure once closed.
   */
  call(op, action, payload = {}, { id, metadata } = {}) {
    if (typeof action !== "string" || !ACTION_RE.test(action)) throw new TypeError(`action must be 1-64 characters of [A-Za-z0-9_.-]: ${JSON.stringify(action)}`);
    if (payload === null || typeof payload !== "object" || Array.isArray(payload)) throw new TypeError("payload must be an object");
    const fresh = id === undefined || id === null;
    const requestId = fresh ? this._newId("js") : checkedId(id);
    const message = { action, id: requestId, payload };
    if (metadata !== undefined) {
      if (!metadata || typeof metadata !== "object" || !Object.values(metadata).every((v) => typeof v === "string")) {
        throw new TypeError("metadata must map strings to strings");
      }
      message.metadata = metadata;
    }
    const text = encode(message);
    this._checkUsable();
    const request = this._watch(requestId, op, "call");
    request.pending = { message, text };
    request.fresh = fresh;
    request.freshOn = null;
    request.sentOn = null;
    this._send(request.pending, request);
    return requestId;
  }

  /** Follow an existing request to its end: resolves `op` as `call` does. */
  subscribe(op, requestId) {
    checkedId(requestId);
    this._checkUsable();
    const request = this._watch(requestId, op, "subscribe");
    this._send(this._subscribeMessage(requestId), request);
  }

  /** Stop a request's updates here: resolves `op`; the request's watchers reject UNSUBSCRIBED. */
  unsubscribe(op, requestId) {
    checkedId(requestId);
    this._systemCall(op, "unsubscribe", "unsubscribed", { requestId });
  }

  /** Resolves `op` with the request's snapshot. */
  status(op, requestId) {
    checkedId(requestId);
    this._systemCall(op, "status", "status", { requestId });
  }

  /**
   * Cancel: resolves `op` with `{requestId, status, result, error}` once the
   * request has ended (CANCELLED, or how it had already ended). A running
   * request ends when its worker notices, so it watches for the `complete` too.
   */
  cancel(op, requestId) {
    checkedId(requestId);
    this._checkUsable();
    const cancel = { op, requestId, done: false };
    const request = this._watch(requestId, op, "cancel");
    request.watchers.get(op).cancel = cancel;
    this._send(this._subscribeMessage(requestId), request);
    this._systemCall(op, "cancel", "status", { requestId }, cancel);
  }

  /** Resolves `op` (with nothing) when the server answers `pong`. */
  ping(op) {
    this._systemCall(op, "ping", "pong", {});
  }

  /**
   * Subscribe to a topic of the caller's tenant: resolves `op` when the server
   * answers `subscribed`, or with its retained notification (delivered as a
   * notification too). The subscription is made again on every new connection.
   */
  subscribeTopic(op, topic) {
    checkedId(topic, "topic");
    this._checkUsable();
    const existing = this._topics.get(topic);
    if (existing) {
      if (existing.op === null) this._emit({ type: "resolve", op, value: undefined });
      else existing.others.push(op);
      return;
    }
    const messageId = this._newId("m");
    const message = { action: "subscribe", id: messageId, topic };
    const subscription = { topic, messageId, pending: { message, text: encode(message) }, op, others: [], last: null, refused: new Map() };
    this._topics.set(topic, subscription);
    this._send(subscription.pending, subscription);
  }

  /** Leave a topic: no more of its notifications, and not subscribed again after a reconnect. */
  unsubscribeTopic(op, topic) {
    checkedId(topic, "topic");
    const subscription = this._topics.get(topic);
    if (subscription) {
      this._topics.delete(topic);
      this._heard(subscription);
      const ended = new StreamerError("UNSUBSCRIBED", `unsubscribed from topic ${topic}`);
      for (const pendingOp of this._topicOps(subscription)) this._emit({ type: "reject", op: pendingOp, error: ended });
    }
    this._systemCall(op, "unsubscribe", "unsubscribed", { topic });
  }

  // --- the connection --------------------------------------------------------------------

  /** A connection is open: send whatever is awaited on it (again). */
  opened() {
    if (this._failure) return;
    this._open = true;
    this._generation += 1;
    this._clearTimers();
    for (const request of this._requests.values()) {
      if (request.pending !== null) {
        if (request.sentOn !== null) request.resent = true;
        this._send(request.pending, request);
      } else {
        this._send(this._subscribeMessage(request.requestId), request);
      }
    }
    for (const call of this._calls.values()) this._send(call.pending, call);
    for (const subscription of this._topics.values()) this._send(subscription.pending, subscription);
  }

  /** The connection is gone: nothing more is sent until `opened()`, which resends. */
  lost() {
    this._open = false;
    this._clearTimers();
  }

  /** Everything awaited rejects with `error`, and so does every later operation. */
  close(error) {
    if (this._failure) return;
    this._failure = error;
    this._open = false;
    this._clearTimers();
    for (const request of [...this._requests.values()]) {
      for (const op of [...request.watchers.keys()]) this._endWatcher(request, op, { error });
    }
    for (const call of [...this._calls.values()]) this._endCall(call, { error });
    for (const subscription of this._topics.values()) {
      for (const op of this._topicOps(subscription)) this._emit({ type: "reject", op, error });
    }
    this._topics.clear();
  }

  /** Time has passed: fire what is due. */
  tick() {
    const now = this._now();
    for (const timer of [...this._timers]) {
      if (timer.at <= now && this._timers.has(timer)) {
        this._timers.delete(timer);
        timer.fire();
      }
    }
  }

  // --- what the server sends ---------------------------------------------------------

  /** A message from the server (JSON text). Unknown types are skipped so a newer server can add some. */
  receive(text) {
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      this._emit({ type: "warning", message: "a server message that is not JSON", detail: String(text).slice(0, 200) });
      return;
    }
    if (!m || typeof m !== "object" || Array.isArray(m)) return;
    const requestId = typeof m.request_id === "string" ? m.request_id : null;
    if (m.type === undefined && typeof m.message === "string") {
      // API Gateway's own answer when a route's integration fails or times out:
      // {"message": "Internal server error", "connectionId", "requestId"}, where
      // requestId is the gateway's, so it names no message of ours.
      this._reject(null, { code: "INTERNAL_ERROR", message: m.message, retryable: false });
      return;
    }
    switch (m.type) {
      case "pong":
        this._answer("pong", {}, undefined, true);
        return;
      case "status": {
        const snapshot = parseSnapshot(m.request);
        if (snapshot) this._answer("status", { requestId: snapshot.requestId }, snapshot, false);
        return;
      }
      case "unsubscribed":
        if (typeof m.topic === "string") this._answer("unsubscribed", { topic: m.topic }, undefined, false);
        else this._answer("unsubscribed", { requestId }, undefined, requestId === null);
        return;
      case "subscribed":
        if (typeof m.topic === "string") this._topicAnswered(m.topic);
        return;
      case "notification":
        this._notification(parseNotification(m));
        return;
      case "error":
        this._reject(requestId, m.error);
        return;
      case "acknowledgment":
        if (requestId) this._deliver({ type: "acknowledgment", requestId, estimatedDurationMs: optionalInt(m.estimated_duration_ms) });
        return;
      case "response":
        if (requestId) this._deliver({ type: "response", requestId, success: m.success === true, data: m.data, error: m.success === true ? null : m.error });
        return;
      case "progress":
        if (requestId && Number.isFinite(Number(m.seq))) this._deliver({ type: "progress", ...parseProgress(m) });
        return;
      case "complete":
        if (requestId && typeof m.status === "string") this._deliver({ type: "complete", ...parseCompletion(m) });
        return;
      default:
        return;
    }
  }

  // --- internals: outputs, timers, sending ----------------------------------------------

  _emit(output) {
    this._outputs.push(output);
  }

  _checkUsable() {
    if (this._failure) throw this._failure;
  }

  _schedule(at, fire, { answer = false, owner = null } = {}) {
    const timer = { at, fire, answer, owner };
    this._timers.add(timer);
    return timer;
  }

  _clearTimers() {
    this._timers.clear();
  }

  // Send a message `owner` (a request, a system action, a topic subscription)
  // awaits the answer to. Nothing is sent while no connection is open:
  // whatever it belongs to is still awaited, so `opened()` sends it.
  _send(pending, owner) {
    if (!this._open) return;
    this._emit({ type: "send", message: pending.message, text: pending.text });
    if (owner.requestId !== undefined && owner.pending === pending && owner.sentOn === null) {
      if (owner.fresh) owner.freshOn = this._generation;
      owner.sentOn = this._generation;
    }
    this._expectAnswer(owner);
  }

  _expectAnswer(owner) {
    if (this._answerTimeoutMs === null) return;
    this._heard(owner);
    owner.sentAt = this._now();
    owner.answerTimer = this._schedule(owner.sentAt + this._answerTimeoutMs, () => this._noAnswer(owner), { answer: true, owner });
  }

  // The server answered about `owner`: nothing it awaits is overdue.
  _heard(owner) {
    if (owner.answerTimer) this._timers.delete(owner.answerTimer);
    owner.answerTimer = null;
  }

  _noAnswer(owner) {
    owner.answerTimer = null;
    let reason = `no answer within ${this._answerTimeoutMs} ms`;
    if (this._unmatched && this._unmatched.at >= owner.sentAt) {
      const { info } = this._unmatched;
      reason += `; meanwhile the server sent an error naming no message: ${info?.code}: ${info?.message}`;
    }
    if (owner.topic !== undefined) {
      if (this._topics.get(owner.topic) !== owner) return;
      const ops = this._topicOps(owner);
      if (ops.length === 0) {
        // Subscribed before; the next connection subscribes again.
        this._emit({ type: "warning", message: `topic ${owner.topic} not confirmed: ${reason}` });
        return;
      }
      this._topics.delete(owner.topic);
      const error = new StreamerError("NO_ANSWER", reason, { retryable: true });
      for (const op of ops) this._emit({ type: "reject", op, error });
      return;
    }
    if (owner.messageId !== undefined) {
      if (this._calls.get(owner.messageId) !== owner) return;
      this._endCall(owner, { error: new StreamerError("NO_ANSWER", reason, { retryable: true, requestId: owner.target.requestId ?? null }) });
      return;
    }
    if (this._requests.get(owner.requestId) !== owner) return;
    const error = new StreamerError("NO_ANSWER", reason, { retryable: true, requestId: owner.requestId });
    for (const op of [...owner.watchers.keys()]) this._endWatcher(owner, op, { error });
  }

  // --- requests and their watchers ------------------------------------------------

  _watch(requestId, op, kind) {
    let request = this._requests.get(requestId);
    if (!request) {
      // `refused`: per refusing code, {count, since} of the refusals in a row
      // since the server last sent anything else about it.
      request = {
        requestId,
        pending: null,
        fresh: false,
        freshOn: null,
        sentOn: null,
        resent: false,
        lastSeq: 0,
        messageIds: new Set(),
        watchers: new Map(),
        refused: new Map(),
        answerTimer: null,
        sentAt: 0,
      };
      this._requests.set(requestId, request);
    }
    request.watchers.set(op, { op, kind, repeats: 0, cancel: null });
    return request;
  }

  // End one watcher with `{value}` or `{error}`; the request is forgotten with its last watcher.
  _endWatcher(request, op, outcome) {
    const watcher = request.watchers.get(op);
    if (!watcher) return;
    request.watchers.delete(op);
    if (request.watchers.size === 0 && this._requests.get(request.requestId) === request) {
      this._heard(request);
      this._requests.delete(request.requestId);
      for (const messageId of request.messageIds) this._aliases.delete(messageId);
    }
    if (watcher.cancel) {
      this._endCancel(watcher.cancel, outcome);
      return;
    }
    this._settle(op, outcome);
  }

  _settle(op, outcome) {
    if (outcome.error) this._emit({ type: "reject", op, error: outcome.error });
    else this._emit({ type: "resolve", op, value: outcome.value });
  }

  _endCancel(cancel, outcome) {
    if (cancel.done) return;
    cancel.done = true;
    const request = this._requests.get(cancel.requestId);
    if (request?.watchers.get(cancel.op)?.cancel === cancel) this._endWatcher(request, cancel.op, {});
    for (const call of this._calls.values()) {
      if (call.cancel === cancel) {
        this._heard(call);
        this._calls.delete(call.messageId);
      }
    }
    this._settle(cancel.op, outcome);
  }

  _subscribeMessage(requestId) {
    const messageId = this._newId("m");
    this._requests.get(requestId)?.messageIds.add(messageId);
    this._aliases.set(messageId, requestId);
    const message = { action: "subscribe", id: messageId, request_id: requestId };
    return { message, text: encode(message) };
  }

  _systemCall(op, action, answer, target, cancel = null) {
    this._checkUsable();
    const messageId = this._newId("m");
    const message = { action, id: messageId };
    if (target.requestId !== undefined) message.request_id = target.requestId;
    if (target.topic !== undefined) message.topic = target.topic;
    const call = { op, messageId, pending: { message, text: encode(message) }, answer, target, cancel, refused: new Map(), answerTimer: null, sentAt: 0 };
    this._calls.set(messageId, call);
    this._send(call.pending, call);
  }

  _endCall(call, outcome) {
    this._heard(call);
    this._calls.delete(call.messageId);
    if (call.cancel) {
      if (outcome.error) this._endCancel(call.cancel, outcome);
      else if (outcome.value?.terminal) {
        const s = outcome.value;
        this._endCancel(call.cancel, { value: { requestId: s.requestId, status: s.status, result: s.result, error: s.error } });
      }
      return;
    }
    this._settle(call.op, outcome);
    if (!outcome.error && call.pending.message.action === "unsubscribe" && call.target.requestId !== undefined) {
      const request = this._requests.get(call.target.requestId);
      if (request) {
        const ended = new StreamerError("UNSUBSCRIBED", "unsubscribed", { requestId: call.target.requestId });
        for (const op of [...request.watchers.keys()]) this._endWatcher(request, op, { error: ended });
      }
    }
  }

  _answer(answer, target, value, onlyOldest) {
    for (const call of [...this._calls.values()]) {
      if (call.answer !== answer) continue;
      if (target.topic !== undefined ? call.target.topic !== target.topic : target.requestId != null && call.target.requestId !== target.requestId) continue;
      this._endCall(call, { value });
      if (onlyOldest) return;
    }
  }

  // --- topics ---

  _topicOps(subscription) {
    return subscription.op === null ? subscription.others : [subscription.op, ...subscription.others];
  }

  _topicAnswered(topic) {
    const subscription = this._topics.get(topic);
    if (!subscription) return;
    this._heard(subscription);
    subscription.refused.clear();
    const ops = this._topicOps(subscription);
    subscription.op = null;
    subscription.others = [];
    for (const op of ops) this._emit({ type: "resolve", op, value: undefined });
  }

  _notification(notification) {
    if (notification.topic !== null) {
      const subscription = this._topics.get(notification.topic);
      if (subscription) {
        const key = notificationKey(notification);
        const last = subscription.last;
        const stale = last && (key === last.key || (notification.timestamp !== null && last.timestamp !== null && notification.timestamp < last.timestamp));
        if (!stale) subscription.last = { key, timestamp: notification.timestamp };
        // Delivered before the answer, as the protocol allows: the subscription holds.
        this._topicAnswered(notification.topic);
        if (stale) return;
      }
    }
    this._emit({ type: "notification", notification });
  }

  // --- errors ---

  _reject(answered, info) {
    if (answered === null) {
      this._emit({ type: "warning", message: "server error answering no message", detail: info });
      this._unmatched = { info, at: this._now() };
      return;
    }
    if (isResendable(info)) {
      info = this._retryLater(answered, info);
      if (info === null) return;
    }
    const call = this._calls.get(answered);
    if (call) {
      this._endCall(call, { error: StreamerError.fromInfo(info, { requestId: call.target.requestId ?? null }) });
      return;
    }
    for (const subscription of this._topics.values()) {
      if (subscription.messageId === answered) {
        this._topics.delete(subscription.topic);
        this._heard(subscription);
        const error = StreamerError.fromInfo(info);
        const ops = this._topicOps(subscription);
        if (ops.length === 0) this._emit({ type: "warning", message: `topic ${subscription.topic} refused on a new connection`, detail: info });
        for (const op of ops) this._emit({ type: "reject", op, error });
        return;
      }
    }
    const requestId = this._aliases.get(answered) ?? answered;
    const request = this._requests.get(requestId);
    if (request) {
      this._heard(request);
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
    if (watcher.kind === "call" && error.code === "CONFLICT" && error.retryable && request.resent && watcher.repeats < this._conflictRetries) {
      // This client's own repeat after a reconnect met the first run still
      // going (a sync request): ask again until it has answered.
      const wait = this._policy.delay(watcher.repeats, this._random);
      watcher.repeats += 1;
      this._schedule(this._now() + wait, () => {
        if (this._requests.get(request.requestId) === request && request.pending) this._send(request.pending, request);
      });
      return;
    }
    this._endWatcher(request, watcher.op, { error });
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
    const subscription = [...this._topics.values()].find((s) => s.messageId === answered);
    if (call) {
      owner = call;
      resend = () => this._calls.get(answered) === call && this._send(call.pending, call);
    } else if (subscription) {
      owner = subscription;
      resend = () => this._topics.get(subscription.topic) === subscription && this._send(subscription.pending, subscription);
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
      if (owner?.pending == null) return info;
      resend = () => this._requests.get(answered) === owner && owner.pending && this._send(owner.pending, owner);
    }
    if (!owner) return info;
    this._heard(owner);
    const now = this._now();
    const { count, since } = owner.refused.get(info.code) ?? { count: 0, since: now };
    const wait = resendWait(info, { count, ms: now - since }, this._limits, this._random);
    if (wait === null) return givenUp(info, { count: count + 1, ms: now - since });
    owner.refused.set(info.code, { count: count + 1, since });
    this._schedule(now + wait, resend);
    return null;
  }

  // --- a request's messages ---

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
    if (event.type !== "progress") request.pending = null;
    if (event.type === "acknowledgment" && (request.freshOn === null || request.freshOn !== this._generation)) {
      // Accepted earlier (a repeated id) or on a connection since replaced:
      // this connection is not the owner, so it must ask for the updates.
      this._send(this._subscribeMessage(request.requestId), request);
    }
    for (const watcher of [...request.watchers.values()]) {
      if (event.type === "progress") {
        if (watcher.kind !== "cancel") this._emit({ type: "progress", op: watcher.op, progress: withoutType(event) });
      } else if (event.type === "acknowledgment") {
        if (watcher.kind === "call") this._emit({ type: "acknowledged", op: watcher.op, acknowledgment: event });
      } else if (watcher.kind === "cancel") {
        const completion =
          event.type === "complete"
            ? { requestId: event.requestId, status: event.status, result: event.result, error: event.error }
            : { requestId: event.requestId, status: "COMPLETED", result: event.data, error: null };
        this._endWatcher(request, watcher.op, { value: completion });
      } else {
        this._endWatcher(request, watcher.op, outcomeOf(event));
      }
    }
  }
}

function withoutType(event) {
  const { type: _type, ...rest } = event;
  return rest;
}
