// What the conversation tracks (requests, system calls, topic subscriptions)
// and what each server message means for them: the half of the sans-I/O
// machine that knows the protocol's answers. conversation.js owns it and
// gives it a host: the options, the clock, ids, randomness, the timers, and
// `send(message)` (the connection it went on, or null when none is open).

import { StreamerError } from "./errors.js";
import { checkedAction, checkedId, encode, givenUp, isResendable, resendWait } from "./protocol.js";
import { backoffDelay } from "./reconnect.js";

const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);

// How many ended ids the application chose are remembered (see `_forget`).
const ENDED_IDS_KEPT = 256;

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

export class Tracker {
  constructor(host) {
    this._host = host;
    this._options = host.options;
    this._requests = new Map(); // request id -> tracked request, in the order first tracked
    this._aliases = new Map(); // subscribe message id -> request id
    this._calls = new Map(); // message id -> pending system action
    this._topics = new Map(); // topic -> subscription, in subscription order
    this._unmatched = null;
    this._endedIds = new Set(); // ids the application chose whose tracking ended, oldest first
  }

  /** The topics followed, in subscription order. */
  topics() {
    return [...this._topics.keys()];
  }

  status(requestId, handle) {
    this._systemCall(handle, "status", "status", { requestId: checkedId(requestId) });
  }

  ping(handle) {
    this._systemCall(handle, "ping", "pong", {});
  }

  /** Everything awaited ends with `error` (the client failed or was closed). */
  failAll(error) {
    for (const request of [...this._requests.values()]) {
      for (const handle of [...request.watchers.keys()]) this._endWatcher(request, handle, { error });
    }
    for (const call of [...this._calls.values()]) this._endCall(call, { error });
    for (const subscription of this._topics.values()) {
      for (const pending of subscription.pending) this._host.result(pending, { error });
    }
    this._topics.clear();
  }

  request({ action, payload = {}, id, metadata, sync_only: syncOnly = false }, handle) {
    checkedAction(action);
    if (payload === null || typeof payload !== "object" || Array.isArray(payload)) throw new TypeError("payload must be an object");
    const fresh = id === undefined || id === null;
    const requestId = fresh ? this._host.newId("request") : checkedId(id);
    const message = { action, id: requestId, payload };
    if (metadata !== undefined) {
      if (!metadata || typeof metadata !== "object" || !Object.values(metadata).every((v) => typeof v === "string")) {
        throw new TypeError("metadata must map strings to strings");
      }
      message.metadata = metadata;
    }
    encode(message);
    handle ??= requestId;
    const unusable = this._host.unusable();
    if (unusable) return this._host.result(handle, { error: unusable });
    const request = this._watch(requestId, handle, syncOnly ? "send" : "call");
    request.pending = message;
    request.fresh = fresh;
    request.firstConn = null;
    request.again = !fresh && this._endedIds.has(requestId);
    this._send(message, request);
    return requestId;
  }

  subscribe(requestId, handle) {
    checkedId(requestId);
    const unusable = this._host.unusable();
    if (unusable) return this._host.result(handle, { error: unusable });
    const request = this._watch(requestId, handle, "subscribe");
    this._send(this._subscribeMessage(request), request);
  }

  unsubscribe(requestId, handle) {
    this._systemCall(handle, "unsubscribe", "unsubscribed", { requestId: checkedId(requestId) });
  }

  // Cancel: resolves with how the request ended. A running request ends when
  // its worker notices, so this follows the request too and waits for its `complete`.
  cancel(requestId, handle) {
    checkedId(requestId);
    const unusable = this._host.unusable();
    if (unusable) return this._host.result(handle, { error: unusable });
    const cancel = { handle, requestId, done: false };
    const request = this._watch(requestId, handle, "cancel");
    request.watchers.get(handle).cancel = cancel;
    this._send(this._subscribeMessage(request), request);
    this._systemCall(handle, "cancel", "status", { requestId }, cancel);
  }

  _systemCall(handle, action, answer, target, cancel = null) {
    const unusable = this._host.unusable();
    if (unusable) return this._host.result(handle, { error: unusable });
    const messageId = this._host.newId("message");
    const message = { action, id: messageId };
    if (target.requestId !== undefined) message.request_id = target.requestId;
    if (target.topic !== undefined) message.topic = target.topic;
    const call = { handle, messageId, message, answer, target, cancel, refused: new Map(), answerTimer: null, awaiting: null, sentAt: 0 };
    this._calls.set(messageId, call);
    this._send(message, call);
  }

  subscribeTopic(topic, handle) {
    checkedId(topic, "topic");
    const unusable = this._host.unusable();
    if (unusable) return this._host.result(handle, { error: unusable });
    const existing = this._topics.get(topic);
    if (existing) {
      existing.handle = handle;
      if (existing.confirmed) this._host.result(handle, { value: null });
      else existing.pending.push(handle);
      return;
    }
    const subscription = { topic, handle, pending: [handle], confirmed: false, messageId: null, message: null, last: null, refused: new Map(), answerTimer: null, awaiting: null, sentAt: 0 };
    this._topics.set(topic, subscription);
    this._sendTopic(subscription);
  }

  _sendTopic(subscription) {
    subscription.messageId = this._host.newId("message");
    subscription.message = { action: "subscribe", id: subscription.messageId, topic: subscription.topic };
    this._send(subscription.message, subscription);
  }

  unsubscribeTopic(topic, handle) {
    checkedId(topic, "topic");
    const subscription = this._topics.get(topic);
    if (subscription) {
      this._topics.delete(topic);
      subscription.answerTimer = this._host.cancel(subscription.answerTimer);
      const ended = new StreamerError("UNSUBSCRIBED", `unsubscribed from topic ${topic}`);
      for (const pending of subscription.pending) this._host.result(pending, { error: ended });
    }
    this._systemCall(handle, "unsubscribe", "unsubscribed", { topic });
  }

  // Send a message `owner` (a request, a system call, a topic subscription)
  // awaits the answer to. Nothing goes while no connection is open: the next
  // connection's resume sends what is still awaited.
  _send(message, owner) {
    const conn = this._host.send(message);
    if (conn === null) return;
    if (owner.requestId !== undefined && owner.pending === message && owner.firstConn === null) owner.firstConn = conn;
    owner.awaiting = conn;
    owner.sentAt = this._host.now();
    owner.answerTimer = this._host.cancel(owner.answerTimer);
    if (this._options.answerTimeoutMs !== null) owner.answerTimer = this._host.schedule(owner.sentAt + this._options.answerTimeoutMs, () => this._noAnswer(owner));
  }

  // The server said something about `owner` on connection `conn`.
  _heard(owner, conn) {
    owner.answerTimer = this._host.cancel(owner.answerTimer);
    if (owner.awaiting === conn) owner.awaiting = null;
  }

  // The connection is gone: nothing sent is awaited on it any more (the
  // machine drops every timer; resends and repeats wait for the resume).
  connectionLost() {
    for (const owner of [...this._requests.values(), ...this._calls.values(), ...this._topics.values()]) {
      owner.answerTimer = null;
      owner.awaiting = null;
    }
  }


  // Everything still awaited, sent (again) on a new connection, in the order
  // tracked: each request (again if unanswered, else `subscribe`), each system
  // call, each topic (a new `subscribe`). Returns what was sent for.
  resume() {
    const owners = [...this._requests.values(), ...this._calls.values(), ...this._topics.values()];
    // A resume starts the refusal counts again.
    for (const owner of owners) owner.refused.clear();
    for (const request of this._requests.values()) {
      if (request.pending !== null) {
        if (request.firstConn !== null) request.resent = true;
        this._send(request.pending, request);
      } else {
        this._send(this._subscribeMessage(request), request);
      }
    }
    for (const call of this._calls.values()) this._send(call.message, call);
    for (const subscription of this._topics.values()) this._sendTopic(subscription);
    return owners;
  }


  _noAnswer(owner) {
    owner.answerTimer = null;
    let reason = `no answer within ${this._options.answerTimeoutMs} ms`;
    if (this._unmatched && this._unmatched.at >= owner.sentAt) {
      const { info } = this._unmatched;
      reason += `; meanwhile the server sent an error naming no message: ${info?.code}: ${info?.message}`;
    }
    if (owner.topic !== undefined) {
      if (this._topics.get(owner.topic) !== owner) return;
      if (owner.pending.length === 0) return this._host.note({ note: `topic ${owner.topic} not confirmed: ${reason}` });
      this._topics.delete(owner.topic);
      const error = new StreamerError("NO_ANSWER", reason, { retryable: true });
      for (const pending of owner.pending) this._host.result(pending, { error });
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

  _watch(requestId, handle, kind) {
    let request = this._requests.get(requestId);
    if (!request) {
      // `refused`: per refusing code, {count, since} of the refusals in a row
      // since the server last sent anything else about it.
      request = { requestId, pending: null, fresh: false, again: false, firstConn: null, resent: false, lastSeq: 0, messageIds: new Set(), watchers: new Map(), refused: new Map(), answerTimer: null, awaiting: null, sentAt: 0 };
      this._requests.set(requestId, request);
    }
    request.watchers.set(handle, { handle, kind, repeats: 0, cancel: null });
    return request;
  }

  _subscribeMessage(request) {
    const messageId = this._host.newId("message");
    request.messageIds.add(messageId);
    this._aliases.set(messageId, request.requestId);
    return { action: "subscribe", id: messageId, request_id: request.requestId };
  }

  // End one watcher with `{value}` or `{error}`; the request is forgotten with its last watcher.
  _endWatcher(request, handle, outcome) {
    const watcher = request.watchers.get(handle);
    if (!watcher) return;
    request.watchers.delete(handle);
    if (request.watchers.size === 0 && this._requests.get(request.requestId) === request) this._forget(request);
    if (watcher.cancel) return this._endCancel(watcher.cancel, outcome);
    this._host.result(handle, outcome);
  }

  // No watcher is left: the request is no longer tracked. An id the
  // application chose is remembered (the last few hundred): a `subscribe`
  // snapshot still on its way must not be taken for news about a new request
  // with the same id.
  _forget(request) {
    request.answerTimer = this._host.cancel(request.answerTimer);
    this._requests.delete(request.requestId);
    for (const messageId of request.messageIds) this._aliases.delete(messageId);
    if (request.fresh) return;
    this._endedIds.delete(request.requestId);
    this._endedIds.add(request.requestId);
    if (this._endedIds.size > ENDED_IDS_KEPT) this._endedIds.delete(this._endedIds.values().next().value);
  }

  _endCancel(cancel, outcome) {
    if (cancel.done) return;
    cancel.done = true;
    const request = this._requests.get(cancel.requestId);
    if (request?.watchers.get(cancel.handle)?.cancel === cancel) {
      request.watchers.get(cancel.handle).cancel = null;
      request.watchers.delete(cancel.handle);
      if (request.watchers.size === 0) this._forget(request);
    }
    for (const call of [...this._calls.values()]) {
      if (call.cancel === cancel) {
        call.answerTimer = this._host.cancel(call.answerTimer);
        this._calls.delete(call.messageId);
      }
    }
    this._host.result(cancel.handle, outcome);
  }

  _endCall(call, outcome) {
    call.answerTimer = this._host.cancel(call.answerTimer);
    this._calls.delete(call.messageId);
    if (call.cancel) {
      if (outcome.error) return this._endCancel(call.cancel, outcome);
      const snapshot = outcome.value;
      if (snapshot && TERMINAL.has(snapshot.status)) {
        this._endCancel(call.cancel, { value: ending(snapshot.request_id, snapshot.status, snapshot.result, snapshot.error) });
      }
      return;
    }
    this._host.result(call.handle, call.answer === "status" || outcome.error ? outcome : { value: null });
    if (!outcome.error && call.message.action === "unsubscribe" && call.target.requestId !== undefined) {
      const request = this._requests.get(call.target.requestId);
      if (request) {
        const ended = new StreamerError("UNSUBSCRIBED", "unsubscribed", { requestId: call.target.requestId });
        for (const handle of [...request.watchers.keys()]) this._endWatcher(request, handle, { error: ended });
      }
    }
  }

  // A server message, received on connection `conn`.
  receive(m, conn) {
    if (!m || typeof m !== "object" || Array.isArray(m)) return;
    const requestId = typeof m.request_id === "string" ? m.request_id : null;
    if (m.type === undefined && typeof m.message === "string") {
      // API Gateway's own answer when a route's integration fails or times out:
      // {"message": "Internal server error", "connectionId", "requestId"}, where
      // requestId is the gateway's, so it names no message of ours.
      return this._refusal(null, { code: "INTERNAL_ERROR", message: m.message, retryable: false }, conn);
    }
    switch (m.type) {
      case "pong":
        return this._answer("pong", {}, null, true, conn);
      case "status":
        if (m.request && typeof m.request.request_id === "string") this._answer("status", { requestId: m.request.request_id }, m.request, false, conn);
        return undefined;
      case "unsubscribed":
        if (typeof m.topic === "string") return this._answer("unsubscribed", { topic: m.topic }, null, false, conn);
        return this._answer("unsubscribed", { requestId }, null, requestId === null, conn);
      case "subscribed":
        return typeof m.topic === "string" ? this._topicConfirmed(m.topic, conn) : undefined;
      case "notification":
        return this._notification(m, conn);
      case "error":
        return this._refusal(requestId, m.error, conn);
      case "acknowledgment":
      case "response":
        return requestId ? this._deliver(m, conn) : undefined;
      case "progress":
        return requestId && Number.isFinite(Number(m.seq)) ? this._deliver(m, conn) : undefined;
      case "complete":
        return requestId && typeof m.status === "string" ? this._deliver(m, conn) : undefined;
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
    for (const handle of pending) this._host.result(handle, { value: null });
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
    this._host.emit({ event: "notification", notification: m });
    if (subscription) this._host.emit({ event: "on_notification", handle: subscription.handle, notification: m });
  }

  _refusal(answered, info, conn) {
    if (answered === null) {
      this._host.note({ note: "server error answering no message", detail: info });
      this._unmatched = { info, at: this._host.now() };
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
      if (subscription.pending.length === 0) this._host.note({ note: `topic ${subscription.topic} refused on a new connection`, detail: info });
      for (const pending of subscription.pending) this._host.result(pending, { error });
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
    if ((watcher.kind === "call" || watcher.kind === "send") && error.code === "CONFLICT" && error.retryable && request.resent && watcher.repeats < this._options.conflictRetries) {
      // This client's own repeat after a reconnect met the first run still
      // going (a sync request): ask again until it has answered.
      const wait = backoffDelay(watcher.repeats, this._options, this._host.random);
      watcher.repeats += 1;
      this._host.schedule(this._host.now() + wait, () => {
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
      resend = () => this._topics.get(subscription.topic) === subscription && this._send(subscription.message, subscription);
    } else if (aliased !== undefined) {
      owner = this._requests.get(aliased);
      // The same subscribe, with its id, as every resend.
      resend = () => this._requests.get(aliased) === owner && this._send({ action: "subscribe", id: answered, request_id: aliased }, owner);
    } else {
      owner = this._requests.get(answered);
      if (owner?.pending == null) return info;
      resend = () => this._requests.get(answered) === owner && owner.pending && this._send(owner.pending, owner);
    }
    if (!owner) return info;
    this._heard(owner, conn);
    const now = this._host.now();
    const { count, since } = owner.refused.get(info.code) ?? { count: 0, since: now };
    const limits = { rateLimitRetries: this._options.rateLimitRetries, unavailableDeadlineMs: this._options.unavailableDeadlineMs };
    const wait = resendWait(info, { count, ms: now - since }, limits, (n) => backoffDelay(n, this._options, this._host.random));
    if (wait === null) return givenUp(info, { count: count + 1, ms: now - since });
    owner.refused.set(info.code, { count: count + 1, since });
    // Awaited again: a rotation keeps the old connection until the resend is answered.
    owner.awaiting = this._host.current();
    this._host.schedule(now + wait, resend);
    return null;
  }

  // An acknowledgment, response, progress or complete about a tracked request.
  _deliver(m, conn) {
    const request = this._requests.get(m.request_id);
    if (!request) return;
    if (request.again && request.pending !== null && (m.type === "progress" || m.type === "complete")) {
      // The id was tracked here before: until its own message is answered, a
      // progress or complete is the earlier tracking's subscribe snapshot
      // arriving late (the answer to this one is an acknowledgment, which is
      // followed by a subscribe whose snapshot brings the same run's news, or
      // an error such as CONFLICT, which must not be pre-empted).
      return;
    }
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
        this._host.emit({ event: "on_progress", handle: watcher.handle, request_id: m.request_id, seq: Number(m.seq), percentage: Number(m.percentage ?? 0), message: String(m.message ?? ""), metadata: m.metadata && typeof m.metadata === "object" ? m.metadata : {}, timestamp: Number.isInteger(m.timestamp) ? m.timestamp : null });
      } else if (m.type === "acknowledgment") {
        if (watcher.kind === "send") {
          this._endWatcher(request, watcher.handle, { error: new StreamerError("NOT_SYNCHRONOUS", `${m.request_id} was accepted to run asynchronously`, { requestId: m.request_id }) });
        } else if (watcher.kind === "call") {
          this._host.emit({ event: "on_acknowledged", handle: watcher.handle, request_id: m.request_id, estimated_duration_ms: Number.isInteger(m.estimated_duration_ms) ? m.estimated_duration_ms : null });
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

  // Whether `owner` (one `resume` returned) still awaits an answer on connection `conn`.
  awaits(owner, conn) {
    return this._stillTracked(owner) && owner.awaiting === conn;
  }

  _stillTracked(owner) {
    if (owner.requestId !== undefined) return this._requests.get(owner.requestId) === owner;
    if (owner.topic !== undefined) return this._topics.get(owner.topic) === owner;
    return this._calls.get(owner.messageId) === owner;
  }
}
