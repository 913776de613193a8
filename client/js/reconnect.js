// When to connect again, and when to rotate a connection: pure decisions over numbers.

/**
 * API Gateway closes every WebSocket connection after 2 hours, and after 10
 * minutes without a message ("Connection duration for WebSocket API: 2 hours;
 * Idle Connection Timeout: 10 minutes", Quotas for configuring and running a
 * WebSocket API in API Gateway:
 * https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html).
 */
export const GATEWAY_MAX_CONNECTION_MS = 2 * 60 * 60 * 1000;
export const GATEWAY_IDLE_TIMEOUT_MS = 10 * 60 * 1000;

/**
 * The connection's timing options and their defaults (client/conversation/README.md
 * lists the same, snake_case, for both clients).
 */
export const CONNECTION_DEFAULTS = Object.freeze({
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  multiplier: 2,
  suspendAfterMs: 120_000,
  suspendedRetryMs: 30_000,
  maxReconnectAttempts: null,
  maxTokenFailures: 3,
  // Under the idle timeout, with room for a slow network.
  pingIntervalMs: GATEWAY_IDLE_TIMEOUT_MS / 2,
  pongTimeoutMs: 15_000,
  maxConnectionMs: GATEWAY_MAX_CONNECTION_MS,
  rotateBeforeMs: 5 * 60 * 1000,
});

/** Full jitter: attempt n (from 0) waits random() * min(maxDelayMs, initialDelayMs * multiplier ** n). */
export function backoffDelay(attempt, { initialDelayMs, maxDelayMs, multiplier }, random) {
  return random() * Math.min(maxDelayMs, initialDelayMs * multiplier ** attempt);
}

/**
 * After `failedAttempts` failed attempts in a row since the connection was
 * lost `disconnectedMs` ago: `{state: "disconnected" | "suspended", delayMs}`,
 * or `{state: "failed"}` once `maxReconnectAttempts` (null: never) is reached.
 * Suspended retries wait suspendedRetryMs * (0.5 + random() / 2).
 */
export function retryPlan(failedAttempts, disconnectedMs, options, random) {
  if (options.maxReconnectAttempts !== null && failedAttempts >= options.maxReconnectAttempts) return { state: "failed", delayMs: null };
  if (disconnectedMs >= options.suspendAfterMs) return { state: "suspended", delayMs: options.suspendedRetryMs * (0.5 + random() / 2) };
  return { state: "disconnected", delayMs: backoffDelay(failedAttempts, options, random) };
}

/** The token's `exp` in ms (read, not verified), or null when it is not a JWT with a numeric `exp`. */
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
 * When to rotate a connection opened at `openedAt`: `rotateBeforeMs` before
 * the earlier of the gateway's limit and the token's expiry, but no earlier
 * than half-way there, so a short-lived token does not rotate again and again.
 * Null when neither limit applies or the token has already expired.
 */
export function rotationAt({ openedAt, maxConnectionMs, expiresAt, rotateBeforeMs }) {
  const deadlines = [];
  if (maxConnectionMs !== null) deadlines.push(openedAt + maxConnectionMs);
  if (expiresAt !== null) deadlines.push(expiresAt);
  if (deadlines.length === 0) return null;
  const deadline = Math.min(...deadlines);
  const span = deadline - openedAt;
  if (span <= 0) return null;
  return deadline - Math.min(rotateBeforeMs, span / 2);
}
