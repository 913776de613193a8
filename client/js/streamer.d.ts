// Type declarations for streamer.js (Streamer's browser and Node 20+ client).

export declare const MAX_MESSAGE_BYTES: number;
export declare const DEFAULT_HEARTBEAT_MS: number;
/** 30000: how long a message answered UNAVAILABLE keeps being sent again by default. */
export declare const DEFAULT_UNAVAILABLE_DEADLINE_MS: number;
/** 35000: how long a message may go unanswered by default (API Gateway ends an integration after 29 s). */
export declare const DEFAULT_ANSWER_TIMEOUT_MS: number;
export declare const TERMINAL_STATUSES: readonly ["COMPLETED", "FAILED", "CANCELLED"];

/** The protocol's error codes. */
export type ProtocolErrorCode =
  | "INVALID_MESSAGE"
  | "INVALID_ACTION"
  | "VALIDATION_ERROR"
  | "PAYLOAD_TOO_LARGE"
  | "UNAUTHORIZED"
  | "FORBIDDEN"
  | "NOT_FOUND"
  | "CONFLICT"
  | "RATE_LIMITED"
  | "TIMEOUT"
  | "PROCESSING_FAILED"
  | "CANCELLED"
  | "UNAVAILABLE"
  | "INTERNAL_ERROR";

/** The client's own codes. */
export type ClientErrorCode = "NO_ANSWER" | "CONNECTION_FAILED" | "CONNECTION_LOST" | "CONNECTION_REFUSED" | "UNSUBSCRIBED";

export type ErrorCode = ProtocolErrorCode | ClientErrorCode;

export declare const ErrorCodes: Readonly<{ [K in ErrorCode]: K }>;

export type RequestStatus = "PENDING" | "PROCESSING" | "RETRYING" | "COMPLETED" | "FAILED" | "CANCELLED";
export type TerminalStatus = "COMPLETED" | "FAILED" | "CANCELLED";

/** The protocol's error object, as the server sends it. */
export interface ErrorInfo {
  code: string;
  message: string;
  details?: Record<string, unknown>;
  retryable: boolean;
}

/** Every error about Streamer. Decide by `code`, never by the message text. */
export declare class StreamerError extends Error {
  constructor(
    code: string,
    message: string,
    options?: { details?: Record<string, unknown>; retryable?: boolean; requestId?: string | null; requestStatus?: string | null },
  );
  /** A protocol code (`ProtocolErrorCode`), the client's own, or one a newer server added. */
  readonly code: ErrorCode | (string & {});
  /** The server's message (without the code). */
  readonly reason: string;
  /** For VALIDATION_ERROR, `details.fields` maps each bad field to what is wrong with it. */
  readonly details: Record<string, unknown>;
  readonly retryable: boolean;
  /** The request the error is about, when there is one. */
  readonly requestId: string | null;
  /** FAILED or CANCELLED when the request ran and ended so; null when it was refused before anything was stored. */
  readonly requestStatus: TerminalStatus | null;
  toJSON(): ErrorInfo;
  static fromInfo(info: unknown, options?: { requestId?: string | null; requestStatus?: string | null }): StreamerError;
}

/** CONNECTION_FAILED, CONNECTION_LOST, or a refused handshake (UNAUTHORIZED, FORBIDDEN, CONNECTION_REFUSED). */
export declare class ConnectionError extends StreamerError {
  constructor(code: string, message: string, options?: { retryable?: boolean; statusCode?: number | null });
  /** The handshake's HTTP status, where the WebSocket implementation reports it (the ws package does, browsers never). */
  readonly statusCode: number | null;
}

export interface Progress {
  requestId: string;
  seq: number;
  percentage: number;
  message: string;
  metadata: Record<string, unknown>;
  timestamp: number | null;
}

export interface Acknowledgment {
  type: "acknowledgment";
  requestId: string;
  estimatedDurationMs: number | null;
}

/** How a request ended (`cancel`'s answer). */
export interface Completion<T = unknown> {
  requestId: string;
  status: TerminalStatus;
  result: T | undefined;
  error: StreamerError | null;
}

/** A request's stored state (`status`'s answer). */
export interface RequestSnapshot<T = unknown> {
  requestId: string;
  action: string;
  status: RequestStatus;
  progress: number | null;
  progressMessage: string | null;
  createdAt: number | null;
  updatedAt: number | null;
  result: T | undefined;
  error: StreamerError | null;
  terminal: boolean;
}

export interface ReconnectOptions {
  /** Default 8; 0 disables reconnecting. */
  maxAttempts?: number;
  /** Default 500. */
  initialDelayMs?: number;
  /** Default 30000. */
  maxDelayMs?: number;
  /** Default 2. */
  multiplier?: number;
}

/** Jittered exponential backoff: attempt n waits random() * min(maxDelayMs, initialDelayMs * multiplier ** n). */
export declare class ReconnectPolicy {
  constructor(options?: ReconnectOptions);
  readonly maxAttempts: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly multiplier: number;
  ceiling(attempt: number): number;
  delay(attempt: number, random?: () => number): number;
}

/** What the client needs of a WebSocket: the browser's, Node 22's, or the ws package's. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: any) => void) | null;
  onclose: ((event: { code?: number }) => void) | null;
}

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface StreamerClientOptions {
  /** A WebSocket constructor; default `globalThis.WebSocket` (Node 20: pass the ws package's). */
  WebSocket?: new (url: string) => WebSocketLike;
  /** A factory, for options a constructor cannot take (wins over `WebSocket`). */
  createWebSocket?: (url: string) => WebSocketLike;
  reconnect?: ReconnectPolicy | ReconnectOptions;
  /** A `ping` this often (default 300000, under the gateway's 10-minute idle timeout); null disables it. */
  heartbeatMs?: number | null;
  /** Default 10000. */
  openTimeoutMs?: number;
  /** For the backoff's jitter; default Math.random. */
  random?: () => number;
  /** How often a message the connection's rate limit refused (RATE_LIMITED with details.limit_per_second) is sent again before the caller sees the error; default 3. */
  rateLimitRetries?: number;
  /**
   * How long a message answered UNAVAILABLE (a dependency such as the store is out; nothing was stored)
   * keeps being sent again, from the first such answer: each resend waits `details.retry_after_ms`
   * (at least 250) plus the reconnect policy's jitter, which grows exponentially and is capped.
   * After it the caller gets the UNAVAILABLE error (retryable). Default 30000; 0 turns resending off.
   */
  unavailableDeadlineMs?: number;
  /**
   * A message that awaits an answer (a request before its acknowledgment or response, a subscribe
   * before its snapshot, a system action) and gets none this long after it was sent rejects its
   * caller with NO_ANSWER (retryable). Default 35000; null waits forever.
   */
  answerTimeoutMs?: number | null;
  logger?: { info(...args: unknown[]): void; warn(...args: unknown[]): void };
  /** `info.attempt` while reconnecting, `info.error` when closed by a failure, `info.reconnected` when open again. */
  onStateChange?: (state: ConnectionState, info: { attempt?: number; error?: StreamerError; reconnected?: boolean }) => void;
}

export interface CallOptions {
  /** The request id and idempotency key: 1-128 of [A-Za-z0-9_.:-]; default a new one. */
  id?: string;
  /** Each new progress, in seq order, at most once. */
  onProgress?: (progress: Progress) => void;
  /** The async request was accepted and stored. */
  onAcknowledged?: (acknowledgment: Acknowledgment) => void;
  metadata?: Record<string, string>;
}

export declare class StreamerClient {
  constructor(url: string, token: string, options?: StreamerClientOptions);
  readonly url: string;
  readonly state: ConnectionState;
  readonly connected: boolean;
  /** Open the connection (not retried: a wrong URL or token fails fast). */
  connect(): Promise<void>;
  /** Close; everything still awaited rejects with CONNECTION_FAILED. */
  close(): void;
  /** Run an action: a sync one's `data`, an async one's `result`. */
  call<T = unknown>(action: string, payload?: Record<string, unknown>, options?: CallOptions): Promise<T>;
  /** Follow an existing request to its end (its result at once if it has ended). */
  subscribe<T = unknown>(requestId: string, options?: { onProgress?: (progress: Progress) => void }): Promise<T>;
  unsubscribe(requestId: string): Promise<void>;
  status<T = unknown>(requestId: string): Promise<RequestSnapshot<T>>;
  /** Cancel, and how the request ended (CANCELLED, or the status it had already ended with). */
  cancel<T = unknown>(requestId: string): Promise<Completion<T>>;
  /** Round trip in milliseconds. */
  ping(): Promise<number>;
}

export declare function newRequestId(prefix?: string): string;
export declare function isValidRequestId(value: unknown): value is string;
export declare function urlWithToken(url: string, token: string): string;
