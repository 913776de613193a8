// Type declarations for streamer.js (Streamer's browser and Node 20+ client).

import type { ConversationOptions } from "./conversation.js";
export { Conversation, DEFAULTS } from "./conversation.js";
export type { ConversationOptions, ConversationInput, ConversationOutput } from "./conversation.js";

/** The client's version, as in its package.json. */
export declare const VERSION: string;
/** The gateway closes the connection (1009) on a bigger message; the client refuses to send one. */
export declare const MAX_MESSAGE_BYTES: number;
export declare const TERMINAL_STATUSES: readonly ["COMPLETED", "FAILED", "CANCELLED"];
/** API Gateway's maximum connection duration, 2 hours. */
export declare const GATEWAY_MAX_CONNECTION_MS: number;
/** API Gateway's idle connection timeout, 10 minutes. */
export declare const GATEWAY_IDLE_TIMEOUT_MS: number;

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
export type ClientErrorCode =
  | "NO_ANSWER"
  | "NOT_SYNCHRONOUS"
  | "CONNECTION_FAILED"
  | "CONNECTION_LOST"
  | "CONNECTION_REFUSED"
  | "TOKEN_FAILED"
  | "UNSUBSCRIBED";

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

/** CONNECTION_FAILED, CONNECTION_LOST, TOKEN_FAILED, or a refused handshake (UNAUTHORIZED, FORBIDDEN, CONNECTION_REFUSED). */
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

/** A notification as the server sends it: a topic's (`topic` set) or one for the user (no `topic`). */
export interface Notification<T = unknown> {
  type: "notification";
  topic?: string;
  event: string;
  data: T;
  timestamp: number;
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

export type ConnectionState = "idle" | "connecting" | "connected" | "disconnected" | "suspended" | "closed" | "failed";
export declare const CONNECTION_STATES: readonly ConnectionState[];

export interface StateChange {
  current: ConnectionState;
  previous: ConnectionState;
  /** `disconnected`/`suspended`: when the next attempt comes (null while the browser is offline). */
  retryInMs: number | null;
  /** `failed`: why (UNAUTHORIZED, FORBIDDEN, CONNECTION_REFUSED, CONNECTION_FAILED, CONNECTION_LOST, TOKEN_FAILED). */
  code: ErrorCode | null;
}

/** Why the token is asked for: the first connection, a reconnect, or a rotation. */
export interface TokenContext {
  reason: "connect" | "reconnect" | "rotate";
}

/** A fixed token, or a provider called for a fresh one before every connection. */
export type TokenSource = string | ((context: TokenContext) => string | Promise<string>);

export interface StreamerClientOptions extends Omit<ConversationOptions, "token"> {
  /** A WebSocket constructor; default `globalThis.WebSocket` (Node 20: pass the ws package's). */
  WebSocket?: new (url: string) => WebSocketLike;
  /** A factory, for options a constructor cannot take (wins over `WebSocket`). */
  createWebSocket?: (url: string) => WebSocketLike;
  /** A handshake not done in this long is a failed attempt; default 10000. */
  openTimeoutMs?: number;
  /** For the jitter; default Math.random. */
  random?: () => number;
  logger?: { info(...args: unknown[]): void; warn(...args: unknown[]): void };
  onStateChange?: (state: ConnectionState, change: StateChange) => void;
  /** In a browser, follow `online`, `offline` and `visibilitychange` (default true). */
  browserEvents?: boolean;
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

export interface ClientEvents {
  statechange: StateChange;
  idle: StateChange;
  connecting: StateChange;
  connected: StateChange;
  disconnected: StateChange;
  suspended: StateChange;
  closed: StateChange;
  failed: StateChange;
  /** Every notification that is news: a topic's, or one sent to the user. */
  notification: Notification;
  /** A connection was replaced before the gateway's limit or the token's expiry. */
  rotated: { reason: "connection" | "token" };
}

export declare class StreamerClient {
  constructor(url: string, token: TokenSource, options?: StreamerClientOptions);
  readonly url: string;
  readonly state: ConnectionState;
  readonly connected: boolean;
  /** The topics followed, restored after every reconnect. */
  readonly topics: string[];
  on<E extends keyof ClientEvents>(event: E, listener: (value: ClientEvents[E]) => void): () => void;
  off<E extends keyof ClientEvents>(event: E, listener: (value: ClientEvents[E]) => void): void;
  /** Open the first connection (not retried: a wrong URL or token fails fast). */
  connect(): Promise<void>;
  /** Close; everything still awaited rejects with CONNECTION_FAILED. */
  close(): void;
  /** Ping now; a connection that answers nothing within `pongTimeoutMs` is replaced. */
  check(): void;
  /** Run an action: a sync one's `data`, an async one's `result`. */
  call<T = unknown>(action: string, payload?: Record<string, unknown>, options?: CallOptions): Promise<T>;
  /** Run a sync action; NOT_SYNCHRONOUS if the server runs it asynchronously. */
  send<T = unknown>(action: string, payload?: Record<string, unknown>, options?: { id?: string; metadata?: Record<string, string> }): Promise<T>;
  /** Follow an existing request to its end (its result at once if it has ended). */
  subscribe<T = unknown>(requestId: string, options?: { onProgress?: (progress: Progress) => void }): Promise<T>;
  unsubscribe(requestId: string): Promise<void>;
  status<T = unknown>(requestId: string): Promise<RequestSnapshot<T>>;
  /** Cancel, and how the request ended (CANCELLED, or the status it had already ended with). */
  cancel<T = unknown>(requestId: string): Promise<Completion<T>>;
  /** Round trip in milliseconds. */
  ping(): Promise<number>;
  /** Follow a topic of your tenant; its retained notification first, restored after every reconnect. */
  subscribeTopic<T = unknown>(topic: string, onNotification?: (notification: Notification<T>) => void): Promise<void>;
  unsubscribeTopic(topic: string): Promise<void>;
}

export declare function newRequestId(prefix?: string): string;
export declare function isValidRequestId(value: unknown): value is string;
export declare function urlWithToken(url: string, token: string): string;
/** A JWT's `exp` in ms (read, not verified), or null. */
export declare function tokenExpiry(token: string): number | null;
/** When a connection opened at `openedAt` is rotated, or null. */
export declare function rotationAt(args: { openedAt: number; maxConnectionMs: number | null; expiresAt: number | null; rotateBeforeMs: number }): number | null;
