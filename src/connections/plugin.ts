import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Server as TlsServer } from 'node:tls';
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config/schema.js';
import { Errors } from '../errors.js';
import { declaredKind, isHighPriority, isProbe, keyOf, kindFromIdentity, mayClaimReserve, SYSTEM_ROUTES } from './classify.js';
import { ConnectionRegistry, type ConnectionEntry, type KindSource } from './registry.js';
import { applyServerSettings } from './server.js';
import type { ClientKind, ConnectionLimits, Refusal } from './types.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Every open HTTP socket and WebSocket session, and the connection limits (src/connections). */
    connections: ConnectionRegistry;
  }
  interface FastifyRequest {
    /** Set when the connection limits refuse this request's connection; a WebSocket route closes with 1013. */
    connectionRefusal?: Refusal;
  }
}

/** The identity a request had when it was last admitted (onRequest, then again in preParsing if it changed). */
const seen = new WeakMap<FastifyRequest, { identity: unknown }>();

type LimitKeys =
  | 'max_connections'
  | 'max_connections_per_key'
  | 'max_connections_per_address'
  | 'connection_reserve_high'
  | 'max_websocket_connections'
  | 'max_probe_connections'
  | 'auth';

export function limitsFromConfig(config: Pick<Config, LimitKeys>): ConnectionLimits {
  return {
    maxConnections: config.max_connections,
    perKey: config.max_connections_per_key,
    perAddress: config.max_connections_per_address,
    // auth=off has no credentials, so nobody could claim the reserve: its places go to everyone.
    reserveHigh: config.auth === 'off' ? 0 : config.connection_reserve_high,
    maxWebSockets: config.max_websocket_connections,
    maxProbes: config.max_probe_connections,
  };
}

/**
 * Whether a request may take a high-priority place: it asks for one, its
 * caller may claim the reserve, and its query and path parameters pass the
 * route's schema (checked now, before any body is read: an invalid request
 * gets no reserved place to be refused in).
 */
function claimsReserve(request: FastifyRequest): boolean {
  if (!isHighPriority(request.query, request.headers['x-priority']) || !mayClaimReserve(request.identity)) return false;
  for (const part of ['querystring', 'params'] as const) {
    const validate = request.getValidationFunction(part) as ((value: unknown) => boolean) | undefined;
    const value = part === 'querystring' ? request.query : request.params;
    if (validate && !validate(value)) return false;
  }
  return true;
}

/** A WebSocket upgrade that reached the router (upgrades never come through the server's 'request' event). */
function isUpgrade(request: FastifyRequest, httpRequests: WeakSet<IncomingMessage>): boolean {
  return !httpRequests.has(request.raw) && /\bwebsocket\b/i.test(String(request.headers.upgrade ?? ''));
}

/** The client kind a request declares or implies, and how sure that is. */
export function requestKind(request: FastifyRequest, upgrade: boolean): { kind: ClientKind; kindSource: KindSource } {
  const query = request.query as { client_kind?: string } | undefined;
  const declared = declaredKind(request.headers['x-client-kind'], upgrade ? query?.client_kind : undefined);
  if (declared) return { kind: declared, kindSource: 'declared' };
  if (SYSTEM_ROUTES.has(request.routeOptions.url ?? '')) return { kind: 'system', kindSource: 'system' };
  // Not identified (a public route, or auth off the path): says nothing, overrides nothing.
  if (!request.identity) return { kind: 'api_script', kindSource: 'none' };
  return { kind: kindFromIdentity(request.identity), kindSource: 'role' };
}

/**
 * The connection registry and limits on a Fastify app: sockets are registered
 * (or refused) as they are accepted, WebSocket sessions by the stream route,
 * requests update their connection (key, client kind, line, counters) and are
 * checked against the per-key limit, the WebSocket limit and the high-priority
 * reserve; refused ones are answered 503 TOO_MANY_CONNECTIONS with
 * `Connection: close` — unless they are probes (/livez, /readyz, /metrics),
 * which the probe allowance serves while it has room.
 *
 * Register it after the auth hook (its onRequest hook must see
 * `request.identity`); identities set later still reach it in preParsing,
 * before any body is read.
 */
async function connections(app: FastifyInstance): Promise<void> {
  const { config, metrics } = app.sightline;
  const registry = new ConnectionRegistry({ limits: limitsFromConfig(config), metrics, logger: app.log });
  metrics.connectionsLimit.set(config.max_connections);
  app.decorate('connections', registry);
  app.decorate('connectionErrors', {
    bodyPending: (socket: Socket) => registry.busy(socket),
    rejected: (reason: 'request_timeout' | 'headers_too_large') => metrics.rejected.inc({ reason }),
    headersTimeoutMs: Math.min(config.headers_timeout_ms, config.body_timeout_ms),
    bodyTimeoutMs: config.body_timeout_ms,
    maxHeaderBytes: config.max_header_bytes,
  });

  const server = app.server;
  // Fastify passes its `http` options to http.createServer only: set them here too (https servers, servers made elsewhere).
  applyServerSettings(server, config);
  // TLS servers emit the decrypted socket (the one requests carry) as 'secureConnection'.
  const acceptEvent = server instanceof TlsServer ? 'secureConnection' : 'connection';
  const onSocket = (socket: Socket) => {
    // Gone before it was handed over (reset during a TLS handshake): nothing to count, no close to wait for.
    if (!socket.destroyed) registry.acceptSocket(socket);
  };
  const httpRequests = new WeakSet<IncomingMessage>();
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    httpRequests.add(req);
    const socket = req.socket;
    registry.requestStarted(socket, req.headers['user-agent']);
    res.once('close', () => registry.requestFinished(socket));
  };
  server.on(acceptEvent, onSocket);
  server.on('request', onRequest);

  const refuse = (request: FastifyRequest, reply: FastifyReply, refusal: Refusal, upgrade: boolean): void => {
    request.connectionRefusal = refusal;
    // A WebSocket is accepted and then closed with 1013 by its route, which tells clients to come back later.
    if (upgrade) return;
    reply.header('connection', 'close');
    throw new Errors.TOO_MANY_CONNECTIONS(refusal.message);
  };

  const admit = (request: FastifyRequest, reply: FastifyReply, phase: 'onRequest' | 'preParsing'): void => {
    const socket = request.raw.socket as Socket | undefined;
    if (!socket || request.connectionRefusal) return;
    const previous = seen.get(request);
    if (phase === 'preParsing' && (!previous || previous.identity === request.identity)) return;
    seen.set(request, { identity: request.identity });
    const upgrade = isUpgrade(request, httpRequests);
    const probe = !upgrade && !registry.closing && isProbe(request.method, request.routeOptions.url);
    const early = registry.refusalOf(socket);
    if (early) {
      const served = probe ? registry.admitProbe(socket) : early;
      if ('reason' in served) refuse(request, reply, served, upgrade);
      return;
    }
    const entry: ConnectionEntry | undefined = registry.entryOf(socket);
    if (entry?.transport !== 'http' || entry.probe) return; // inject(), a socket from before the plugin, or a probe being served
    if (upgrade && !previous) registry.upgradeRequested(socket, request.headers['user-agent']);
    const refusal = registry.admit(entry, {
      key: request.identity ? keyOf(request.identity) : undefined,
      high: claimsReserve(request),
      upgrade,
      ...requestKind(request, upgrade),
      userAgent: request.headers['user-agent'],
    });
    if (!refusal) return;
    if (probe && (refusal.reason === 'reserve_high' || refusal.reason === 'per_key')) {
      const served = registry.admitProbe(socket);
      if (!('reason' in served)) return;
    }
    registry.refuse(entry, refusal);
    refuse(request, reply, refusal, upgrade);
  };

  app.addHook('onRequest', async (request, reply) => admit(request, reply, 'onRequest'));
  app.addHook('preParsing', async (request, reply) => admit(request, reply, 'preParsing'));
  // Refused and kicked sockets close after their answer, whoever produced it (auth's 401 included);
  // so do probes served from their allowance and refused requests in the reserve (registry.settle).
  app.addHook('onSend', async (request, reply) => {
    const socket = request.raw.socket as Socket | undefined;
    if (!socket) return;
    const entry = registry.entryOf(socket);
    const settled = entry !== undefined && entry.transport === 'http' && registry.settle(entry, reply.statusCode);
    if (registry.closing || registry.refusalOf(socket) || entry?.kicked || settled) reply.header('connection', 'close');
  });
  // The production line a route took from its query or path (request.line; an admin filter named `line` is none).
  app.addHook('onResponse', async (request) => {
    const entry = registry.entryOf(request.raw.socket as Socket | undefined);
    if (entry && request.line) registry.noteLine(entry, request.line);
  });
  // Sockets with nothing in flight (idle keep-alive, half-sent heads, refused) would hold
  // server.close() until their timeouts, and Node stops checking those once it closes.
  app.addHook('preClose', async () => {
    registry.closing = true;
    const cut = registry.sweep();
    if (cut > 0) app.log.debug({ event: 'connections_swept', sockets: cut }, `closed ${cut} idle connection(s)`);
  });
  app.addHook('onClose', async () => {
    server.off(acceptEvent, onSocket);
    server.off('request', onRequest);
  });
}

export const connectionsPlugin = fp(connections, { name: 'sightline-connections' });
