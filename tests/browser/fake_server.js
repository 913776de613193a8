// A scripted Streamer server for the JS client's tests (test code, never shipped), as
// tests/client/fake_streamer_server.py is for the Python client: it speaks the protocol
// over real sockets on 127.0.0.1 (sync `echo`, async `generate_report`, system actions)
// and lets a test answer a message its own way (`onMessage` returning true) instead.

import { once } from "node:events";
import { WebSocketServer } from "ws";

/** Start a server; resolves with `{url, received, connections, runs, onMessage, holdReports, close()}`. */
export async function startFakeServer() {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
  await once(wss, "listening");
  const requests = new Map();
  const server = {
    url: `ws://127.0.0.1:${wss.address().port}/`,
    /** Every client message, in arrival order. */
    received: [],
    /** The server's side of every connection, in the order they opened. */
    connections: [],
    /** How often each async request ran. */
    runs: new Map(),
    /** `(socket, message) => boolean | Promise<boolean>`: true swallows the message. */
    onMessage: null,
    /** When set, a promise every report awaits between its acknowledgment and its complete. */
    holdReports: null,
    receivedActions(action) {
      return server.received.filter((message) => message.action === action);
    },
    async close() {
      for (const socket of wss.clients) socket.terminate();
      await new Promise((resolve) => wss.close(resolve));
    },
  };

  const send = (socket, message) => socket.send(JSON.stringify(message));
  const error = (socket, id, code, text) =>
    send(socket, { type: "error", request_id: id, error: { code, message: text, retryable: false } });
  const snapshot = (request) => ({
    request_id: request.id,
    action: "generate_report",
    status: request.complete ? "COMPLETED" : "PROCESSING",
    progress: request.complete ? 100 : 0,
    progress_message: null,
    created_at: 1,
    updated_at: 2,
    ...(request.complete ? { result: request.complete.result } : {}),
  });

  async function report(socket, message) {
    const id = message.id;
    let request = requests.get(id);
    if (!request) {
      request = { id, complete: null, sockets: new Set([socket]) };
      requests.set(id, request);
      server.runs.set(id, (server.runs.get(id) ?? 0) + 1);
      send(socket, { type: "acknowledgment", request_id: id, status: "QUEUED", estimated_duration_ms: 30000 });
      if (server.holdReports) await server.holdReports;
      request.complete = { type: "complete", request_id: id, seq: 1, status: "COMPLETED", result: { pages: message.payload.pages, report_id: `rep-${id}` }, timestamp: 3 };
      for (const follower of request.sockets) send(follower, request.complete);
      return;
    }
    request.sockets.add(socket);
    send(socket, { type: "acknowledgment", request_id: id, status: "QUEUED", estimated_duration_ms: 30000 });
    if (request.complete) send(socket, request.complete);
  }

  function system(socket, message) {
    const request = requests.get(message.request_id);
    if (message.action === "unsubscribe") {
      request?.sockets.delete(socket);
      return send(socket, { type: "unsubscribed", request_id: message.request_id });
    }
    if (!request) return error(socket, message.id, "NOT_FOUND", "unknown request id");
    if (message.action === "subscribe") {
      request.sockets.add(socket);
      return send(socket, request.complete ?? { type: "progress", request_id: request.id, seq: 0, percentage: 0, message: "", timestamp: 1 });
    }
    return send(socket, { type: "status", request: snapshot(request) });
  }

  wss.on("connection", (socket) => {
    server.connections.push(socket);
    socket.on("message", async (raw) => {
      const message = JSON.parse(String(raw));
      server.received.push(message);
      if (server.onMessage && (await server.onMessage(socket, message))) return;
      if (message.action === "ping") send(socket, { type: "pong" });
      else if (["status", "subscribe", "unsubscribe", "cancel"].includes(message.action)) system(socket, message);
      else if (message.action === "echo") send(socket, { type: "response", request_id: message.id, success: true, data: { echo: message.payload } });
      else if (message.action === "generate_report") await report(socket, message);
      else error(socket, message.id, "INVALID_ACTION", `no handler for ${message.action}`);
    });
  });
  return server;
}
