// When to connect again and when to rotate a connection: pure decisions over numbers.

/**
 * API Gateway closes every WebSocket connection after 2 hours, and after 10
 * minutes without a message ("Connection duration for WebSocket APIs: 2 hours;
 * Idle Connection Timeout: 10 minutes", Amazon API Gateway quotas for
 * configuring and running a WebSocket API:
 * https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html).
 */
export const GATEWAY_MAX_CONNECTION_MS = 2 * 60 * 60 * 1000;
export const GATEWAY_IDLE_TIMEOUT_MS = 10 * 60 * 1000;

/** A `ping` this often keeps a connection under the idle timeout, with room for a slow network. */
export const DEFAULT_HEARTBEAT_MS = GATEWAY_IDLE_TIMEOUT_MS / 2;

/** A connection is rotated this long before the gateway's limit or the token's `exp`. */
export const DEFAULT_ROTATION_MARGIN_MS = 5 * 60 * 1000;

/** Retries after the backoff's attempts are spent ("suspended") come this often. */
export const DEFAULT_SUSPENDED_RETRY_MS = 30_000;

/**
 * Jittered exponential backoff: attempt n (from 0) waits a uniformly random
 * time up to min(maxDelayMs, initialDelayMs * multiplier ** n) ("full jitter").
 * After `maxAttempts` failed attempts in a row the client is `suspended` and
 * tries every `suspendedRetryMs` (jittered by up to a fifth either way); it
 * gives up (`failed`) only after `giveUpAfterMs` without a connection, and by
 * default never.
 */
export class ReconnectPolicy {
  constructor({
    maxAttempts = 8,
    initialDelayMs = 500,
    maxDelayMs = 30_000,
    multiplier = 2,
    suspendedRetryMs = DEFAULT_SUSPENDED_RETRY_MS,
    giveUpAfterMs = null,
  } = {}) {
    if (maxAttempts < 0 || initialDelayMs < 0 || maxDelayMs < 0 || suspendedRetryMs < 0) throw new RangeError("reconnect policy values must not be negative");
    if (multiplier < 1) throw new RangeError("multiplier must be at least 1");
    if (giveUpAfterMs !== null && !(giveUpAfterMs >= 0)) throw new RangeError("giveUpAfterMs must be null (never) or not negative");
    Object.assign(this, { maxAttempts, initialDelayMs, maxDelayMs, multiplier, suspendedRetryMs, giveUpAfterMs });
    Object.freeze(this);
  }

  ceiling(attempt) {
    return Math.min(this.maxDelayMs, this.initialDelayMs * this.multiplier ** attempt);
  }

  delay(attempt, random = Math.random) {
    return random() * this.ceiling(attempt);
  }

  /**
   * What to do after `failed` attempts in a row, `disconnectedMs` after the
   * connection was lost: `{state: "disconnected" | "suspended", delayMs}`, or
   * `{state: "failed"}` once `giveUpAfterMs` has passed.
   */
  next(failed, disconnectedMs, random = Math.random) {
    if (this.giveUpAfterMs !== null && disconnectedMs >= this.giveUpAfterMs) return { state: "failed", delayMs: null };
    if (failed < this.maxAttempts) return { state: "disconnected", delayMs: this.delay(failed, random) };
    return { state: "suspended", delayMs: this.suspendedRetryMs * (0.8 + 0.4 * random()) };
  }
}

/** The token's `exp` in ms, or null when it is not a JWT with a numeric `exp`. */
export function tokenExpiry(token) {
  const part = typeof token === "string" ? token.split(".")[1] : undefined;
  if (!part) return null;
  try {
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))));
    return typeof claims?.exp === "number" && Number.isFinite(claims.exp) ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * Milliseconds from opening a connection to rotating it: `marginMs` before the
 * earlier of the gateway's limit (`maxConnectionMs` after opening) and the
 * token's expiry, but never before half of that time, so a short-lived token
 * does not make the client rotate at once again and again. Null when neither
 * limit applies (or the token has already expired: rotating would not help).
 */
export function rotationDelay({ openedAt, maxConnectionMs, expiresAt, marginMs }) {
  const limits = [];
  if (maxConnectionMs !== null) limits.push(maxConnectionMs);
  if (expiresAt !== null && expiresAt > openedAt) limits.push(expiresAt - openedAt);
  if (limits.length === 0) return null;
  const lifetime = Math.min(...limits);
  return Math.max(lifetime / 2, lifetime - marginMs);
}
