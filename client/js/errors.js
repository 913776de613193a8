// The client's error types: the protocol's error object as an Error, and the connection's own.

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
 * which browsers never do), the connection is gone for good (CONNECTION_LOST),
 * or the token provider failed (TOKEN_FAILED).
 */
export class ConnectionError extends StreamerError {
  constructor(code, message, { retryable = true, statusCode = null } = {}) {
    super(code, message, { retryable, details: statusCode ? { status_code: statusCode } : {} });
    this.name = "ConnectionError";
    this.statusCode = statusCode;
  }
}
