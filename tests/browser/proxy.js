// A TCP proxy between a client and the local stack that a test can cut: a network
// outage as the client sees it (open sockets die, new ones are refused), then back.

import { once } from "node:events";
import { createConnection, createServer } from "node:net";

/** Proxy 127.0.0.1:<free port> to `target` (a ws:// URL); resolves with `{url, down(), up(), close()}`. */
export async function startProxy(target) {
  const { hostname, port: targetPort, pathname, search } = new URL(target);
  const sockets = new Set();
  let port = 0;
  let server = null;

  async function listen() {
    server = createServer((client) => {
      const upstream = createConnection({ host: hostname, port: Number(targetPort) });
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on("close", () => sockets.delete(socket));
        socket.on("error", () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    server.listen(port, "127.0.0.1");
    await once(server, "listening");
    port = server.address().port;
  }

  await listen();
  return {
    url: `ws://127.0.0.1:${port}${pathname}${search}`,
    /** The network is gone: every open socket is reset and nothing new connects. */
    async down() {
      const closed = new Promise((resolve) => server.close(resolve));
      for (const socket of sockets) socket.resetAndDestroy();
      await closed;
    },
    /** The network is back, on the same port. */
    async up() {
      await listen();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      if (server.listening) await new Promise((resolve) => server.close(resolve));
    },
  };
}
