import { Server as NetServer, type Socket } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';

/**
 * The graceful drain of HTTP keep-alive connections before the app closes.
 *
 * A server cannot close an idle keep-alive socket without a race: the client
 * may be writing its next request on it at that very moment, and that request
 * then meets a reset with no answer (for a POST, the client cannot tell whether
 * it ran). The only race-free close is a response that says `Connection: close`.
 * So the drain stops accepting connections (new ones are refused, which a
 * client or load balancer retries elsewhere without doubt), answers every
 * request still arriving on open connections normally but with `Connection:
 * close`, and gives idle connections up to a grace period to carry one more
 * request (and so close cleanly) or to be closed by their client. Only sockets
 * idle for the whole grace are cut when the app closes afterwards.
 */
export interface HttpDrain {
  /** True once draining began (or the app started closing): every response carries `Connection: close`. */
  readonly active: boolean;
  /** Marks the drain without waiting (the app's preClose does, for closes that skipped drain()). */
  mark(): void;
  /** Stops accepting connections and waits up to `graceMs` until no HTTP connection is idle. */
  drain(graceMs: number): Promise<{ idleLeft: number }>;
}

// Keyed by the HTTP server, which the app and every plugin context (routes) share.
const drains = new WeakMap<object, HttpDrain>();

/** The drain of an app built by buildApp. */
export function httpDrainOf(app: FastifyInstance): HttpDrain | undefined {
  return drains.get(app.server);
}

const POLL_MS = 20;

/**
 * Tracks the app's HTTP sockets (idle: open with no request in flight) and adds
 * `Connection: close` to every response once the drain is active. Install
 * before the server listens.
 */
export function installHttpDrain(app: FastifyInstance): HttpDrain {
  const server = app.server;
  /** Open HTTP sockets, each with its number of requests in flight. WebSocket sockets never appear: upgrades are no 'request'. */
  const sockets = new Map<Socket, number>();
  let active = false;
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    if (!sockets.has(socket)) socket.once('close', () => sockets.delete(socket));
    sockets.set(socket, (sockets.get(socket) ?? 0) + 1);
    res.once('close', () => {
      const n = sockets.get(socket);
      if (n !== undefined) sockets.set(socket, n - 1);
    });
  };
  server.on('request', onRequest);
  app.addHook('onSend', async (_request, reply) => {
    if (active) reply.header('connection', 'close');
  });
  app.addHook('onClose', async () => {
    server.off('request', onRequest);
  });
  const idle = () => {
    let n = 0;
    for (const [socket, inFlight] of sockets) if (inFlight === 0 && !socket.destroyed) n++;
    return n;
  };
  const drain: HttpDrain = {
    get active() {
      return active;
    },
    mark() {
      active = true;
    },
    async drain(graceMs) {
      active = true;
      // net.Server's close, not http.Server's: that one (Node ≥ 19) also cuts every idle
      // keep-alive socket at once, which is the race this drain exists to avoid.
      if (server.listening) NetServer.prototype.close.call(server);
      const until = Date.now() + graceMs;
      while (idle() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, POLL_MS));
      return { idleLeft: idle() };
    },
  };
  drains.set(app.server, drain);
  return drain;
}
