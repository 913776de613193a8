// The JS client's public API as a TypeScript application uses it, imported by
// the package's name (its `exports`). `tsc -p types` checks it with --strict:
// the types must accept this, and refuse what the @ts-expect-error lines do.

import {
  Conversation,
  ErrorCodes,
  StreamerClient,
  StreamerError,
  VERSION,
  type Completion,
  type ConnectionState,
  type Notification,
  type Progress,
  type RequestSnapshot,
  type StateChange,
} from "@streamer/client";
import { DEFAULTS } from "@streamer/client/conversation";

interface Report {
  pages: number;
  report_id: string;
}

export async function run(url: string, fetchToken: () => Promise<string>): Promise<void> {
  const client = new StreamerClient(url, async ({ reason }) => (reason === "rotate" ? fetchToken() : fetchToken()), {
    pingIntervalMs: 60_000,
    pongTimeoutMs: 10_000,
    suspendAfterMs: 120_000,
    maxReconnectAttempts: null,
    maxConnectionMs: 7_200_000,
    rotateBeforeMs: 300_000,
    onStateChange: (state: ConnectionState, change: StateChange) => console.log(state, change.retryInMs),
  });
  const stop = client.on("statechange", (change) => console.log(change.previous, "->", change.current, change.code));
  client.on("notification", (n: Notification) => console.log(n.event, n.topic ?? "for the user"));
  client.on("rotated", ({ reason }) => console.log("rotated for", reason));
  await client.connect();

  const report = await client.call<Report>("generate_report", { pages: 5 }, {
    onProgress: (p: Progress) => console.log(p.requestId, p.seq, p.percentage, p.message),
    onAcknowledged: (a) => console.log(a.estimatedDurationMs),
  });
  const pages: number = report.pages;
  const echoed = await client.send<{ echo: unknown }>("echo", { hello: "world" });
  const snapshot: RequestSnapshot<Report> = await client.status<Report>(report.report_id);
  const ended: Completion = await client.cancel(snapshot.requestId);
  const rtt: number = await client.ping();
  await client.subscribeTopic<{ validatedBooks: number }>("job-1", (n) => console.log(n.data.validatedBooks, n.timestamp));
  await client.unsubscribeTopic("job-1");
  const topics: string[] = client.topics;
  client.check();
  try {
    await client.subscribe(snapshot.requestId);
  } catch (error) {
    if (error instanceof StreamerError && error.code === ErrorCodes.UNSUBSCRIBED) console.log(error.requestId, error.retryable);
  }
  stop();
  client.close();
  console.log(VERSION, pages, echoed.echo, ended.status, rtt, topics, DEFAULTS.pingIntervalMs);

  const machine = new Conversation({ token: "t", pingIntervalMs: null });
  const out = machine.handle({ call: "connect" });
  for (const io of out.io) if (io.do === "open") console.log(io.conn, io.token);
  console.log(machine.nextDeadline(), machine.state);

  // @ts-expect-error the token is a string or a provider
  new StreamerClient(url, 42);
  // @ts-expect-error the options have no such key
  new StreamerClient(url, "t", { heartbeatMs: 1000 });
  // @ts-expect-error an action is a string
  await client.call(7);
  // @ts-expect-error there is no such event
  client.on("reconnecting", () => {});
  // @ts-expect-error a state is one of seven names
  const wrong: ConnectionState = "open";
  console.log(wrong);
}
