// Type declarations for conversation.js: the client's conversation as a sans-I/O state machine
// (inputs and outputs as in client/conversation/README.md, options in camelCase).

export interface ConversationOptions {
  /** A fixed token; null (the default) asks for one (`fetch_token`) before every connection. */
  token?: string | null;
  /** A sent message unanswered this long ends its call with NO_ANSWER; default 35000, null: never. */
  answerTimeoutMs?: number | null;
  /** Resends in a row of a message refused by the connection's rate limit; default 3. */
  rateLimitRetries?: number;
  /** Resends of a message refused UNAVAILABLE go out within this of the first refusal; default 30000. */
  unavailableDeadlineMs?: number;
  /** Resends of a request answered retryable CONFLICT after this client resent it; default 8. */
  conflictRetries?: number;
  /** Reconnect attempt n waits random() * min(maxDelayMs, initialDelayMs * multiplier ** n); defaults 500, 30000, 2. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  multiplier?: number;
  /** Disconnected this long: `suspended`; default 120000. */
  suspendAfterMs?: number;
  /** Suspended attempts wait suspendedRetryMs * (0.5 + random() / 2); default 30000. */
  suspendedRetryMs?: number;
  /** null (default): never give up; a number: `failed` (CONNECTION_LOST) after that many failed attempts in a row. */
  maxReconnectAttempts?: number | null;
  /** Token provider failures or 401 refusals in a row before `failed`; default 3. */
  maxTokenFailures?: number;
  /** A keepalive `ping` when nothing was sent for this long; default 300000, null: none. */
  pingIntervalMs?: number | null;
  /** Nothing received this long after a keepalive ping: the connection is dead; default 15000. */
  pongTimeoutMs?: number;
  /** API Gateway's maximum connection duration; default 7200000, null: no limit. */
  maxConnectionMs?: number | null;
  /** Rotate this long before maxConnectionMs or the token's `exp` (at most half the connection's life); default 300000. */
  rotateBeforeMs?: number;
}

export declare const DEFAULTS: Readonly<Required<ConversationOptions>>;

export type ConversationInput =
  | { call: "connect" | "close" }
  | { call: "request"; args: { action: string; payload?: Record<string, unknown>; id?: string; metadata?: Record<string, string>; sync_only?: boolean }; handle?: string | number }
  | { call: "subscribe" | "unsubscribe" | "status" | "cancel"; args: { request_id: string }; handle: string | number }
  | { call: "ping"; handle: string | number }
  | { call: "subscribe_topic" | "unsubscribe_topic"; args: { topic: string }; handle: string | number }
  | { receive: Record<string, unknown>; conn?: number }
  | { event: "open" | "close" | "connect_failed"; conn: number }
  | { event: "handshake_refused"; conn: number; status: number }
  | { event: "token"; token: string }
  | { event: "token_failed" | "online" | "offline" | "visible" | "check" }
  | { event: "tick"; at: number };

export type IoOutput =
  | { do: "fetch_token"; reason: "connect" | "reconnect" | "rotate" }
  | { do: "open"; conn: number; token: string }
  | { do: "send"; conn: number; message: Record<string, unknown> }
  | { do: "close"; conn: number };

export interface ConversationOutput {
  io: IoOutput[];
  events: Array<{ event: string; [field: string]: unknown }>;
  results: Array<{ handle: string | number; ok: unknown } | { handle: string | number; error: Error & { code: string; requestStatus: string | null } }>;
  notes: Array<{ note: string; [field: string]: unknown }>;
}

export declare class Conversation {
  constructor(
    options?: ConversationOptions,
    io?: { now?: () => number; newId?: (kind: "message" | "request") => string; random?: () => number },
  );
  readonly options: Readonly<Required<ConversationOptions>>;
  /** idle, connecting, connected, disconnected, suspended, closed or failed. */
  readonly state: string;
  handle(input: ConversationInput): ConversationOutput;
  /** The earliest timer (ms), or null. */
  nextDeadline(): number | null;
  topics(): string[];
}
