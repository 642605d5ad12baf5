import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import websocket from '@fastify/websocket';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Errors } from '../../errors.js';
import { FRAME_ID_PATTERN, type ClientMessage, type StreamLimits } from '../../protocol/stream.js';
import { CLOSE_CODES, StreamSession, type ServerFigures } from '../../stream/session.js';
import { DEFAULT_LINE, detectQuerySchema, LINE_PATTERN, MAX_REQUEST_TIMEOUT_MS } from './detect.js';

/** A line, or "*" for every line (subscriptions only). */
const SUBSCRIBABLE_LINE = `^(\\*|${LINE_PATTERN.slice(1, -1)})$`;
const CLIENT_KIND = /^[A-Za-z0-9._-]{1,32}$/;
/** How long app.close() lets stream connections finish their close handshake. */
const SHUTDOWN_GRACE_MS = 1000;

const StreamQuerySchema = Type.Object({
  line: Type.Optional(Type.String({ pattern: LINE_PATTERN })),
  /** Comma-separated lines (or "*") to subscribe to from the start. */
  lines: Type.Optional(Type.String({ pattern: `^(\\*|${LINE_PATTERN.slice(1, -1)})(,(\\*|${LINE_PATTERN.slice(1, -1)}))*$` })),
  client_kind: Type.Optional(Type.String()),
});
type StreamQuery = Static<typeof StreamQuerySchema>;

/** The per-frame header schema: the query of POST /v1/detect plus the frame id and its deadline. */
export function frameHeaderSchema(maxDetectionsLimit: number) {
  const query = detectQuerySchema(maxDetectionsLimit);
  return Type.Object(
    {
      id: Type.String({ pattern: FRAME_ID_PATTERN }),
      ...query.properties,
      timeout_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_REQUEST_TIMEOUT_MS })),
    },
    { additionalProperties: false },
  );
}

export function clientMessageSchemas(maxSubscriptions: number): Record<ClientMessage['type'], TSchema> {
  const lines = Type.Array(Type.String({ pattern: SUBSCRIBABLE_LINE }), { minItems: 1, maxItems: maxSubscriptions });
  return {
    subscribe: Type.Object({ type: Type.Literal('subscribe'), lines }, { additionalProperties: false }),
    unsubscribe: Type.Object({ type: Type.Literal('unsubscribe'), lines }, { additionalProperties: false }),
    ping: Type.Object({ type: Type.Literal('ping'), id: Type.Optional(Type.String({ maxLength: 128 })) }, { additionalProperties: false }),
  };
}

function clientKindOf(header: string | string[] | undefined, query: string | undefined): string {
  const value = (Array.isArray(header) ? header[0] : header) ?? query;
  return value !== undefined && CLIENT_KIND.test(value) ? value : 'unknown';
}

/** GET /v1/stream (WebSocket): see src/protocol/stream.ts. */
export async function streamRoutes(app: FastifyInstance): Promise<void> {
  const { config, models, metrics, store, events, live } = app.sightline;
  const sessions = new Set<StreamSession>();
  const limits: StreamLimits = {
    max_in_flight: config.stream_max_in_flight,
    max_pending: config.stream_max_pending,
    drop_policy: config.stream_drop_policy,
    max_frame_bytes: config.body_limit_bytes,
    max_subscriptions: config.stream_max_subscriptions,
    ping_interval_ms: config.stream_ping_interval_ms,
    idle_timeout_ms: config.stream_idle_timeout_ms,
    status_interval_ms: config.stream_status_interval_ms,
  };
  const headerCheck = TypeCompiler.Compile(frameHeaderSchema(config.max_detections_limit) as TSchema);
  const schemas = clientMessageSchemas(config.stream_max_subscriptions);
  const messageChecks = {
    subscribe: TypeCompiler.Compile(schemas.subscribe),
    unsubscribe: TypeCompiler.Compile(schemas.unsubscribe),
    ping: TypeCompiler.Compile(schemas.ping),
  };
  const figures = (): ServerFigures => {
    const snapshot = live.snapshot(config.stream_status_interval_ms);
    let queueDepth = 0;
    for (const entry of models.list()) queueDepth += entry.batcher?.depth ?? 0;
    return { connections: sessions.size, throughput_fps: snapshot.throughput_fps, latency_ms: snapshot.latency_ms, queue_depth: queueDepth };
  };

  await app.register(websocket, {
    // Compression off: JPEG frames do not shrink, and inflating is a memory-amplification risk.
    options: { maxPayload: config.body_limit_bytes, perMessageDeflate: false },
    // Socket errors come from clients (bad framing, oversized messages): ws closes the socket itself.
    errorHandler: (err, _socket, request) => {
      request.log.warn({ event: 'stream_socket_error', error_message: err.message }, `stream socket error: ${err.message}`);
    },
    // Shutdown: every stream connection gets 1001 and at most SHUTDOWN_GRACE_MS to finish the handshake.
    preClose: async () => {
      const open = [...sessions];
      for (const session of open) session.close(CLOSE_CODES.GOING_AWAY, 'server shutting down', 'server_shutdown');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(open.map((s) => s.done)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_GRACE_MS))),
      ]);
      clearTimeout(timer);
      for (const client of app.websocketServer.clients) client.terminate();
      await new Promise<void>((resolve) => app.websocketServer.close(() => resolve()));
    },
  });

  app.route<{ Querystring: StreamQuery }>({
    method: 'GET',
    url: '/v1/stream',
    schema: { querystring: StreamQuerySchema },
    // Checked before the upgrade, so a bad query is an HTTP 400 with an error body.
    preHandler: async (request) => {
      const lines = request.query.lines?.split(',') ?? [];
      if (new Set(lines).size > config.stream_max_subscriptions) {
        throw new Errors.INVALID_REQUEST(`lines names ${new Set(lines).size} lines, more than the limit of ${config.stream_max_subscriptions}`);
      }
      if (request.query.line) request.line = request.query.line;
    },
    handler: async (_request, reply) => {
      reply.status(426).header('upgrade', 'websocket');
      return { error: { code: 'INVALID_REQUEST', message: 'GET /v1/stream is a WebSocket endpoint: send an Upgrade: websocket request' } };
    },
    wsHandler: (socket, request) => {
      const query = request.query as StreamQuery;
      const lines = [...new Set(query.lines?.split(',') ?? [])];
      const session = new StreamSession(
        socket,
        {
          id: randomUUID(),
          remoteAddress: request.ip,
          clientKind: clientKindOf(request.headers['x-client-kind'], query.client_kind),
          defaultLine: query.line ?? DEFAULT_LINE,
          lines,
        },
        {
          config,
          models,
          metrics,
          store,
          events,
          logger: request.log,
          limits,
          headerCheck,
          messageChecks,
          figures,
          onClosed: (s) => sessions.delete(s),
        },
      );
      sessions.add(session);
      session.start();
    },
  });
}
