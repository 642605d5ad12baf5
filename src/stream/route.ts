import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import websocket from '@fastify/websocket';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Errors } from '../errors.js';
import { errorResponse } from '../protocol/error-response.js';
import { FRAME_ID_PATTERN, type ClientMessage, type StreamLimits } from '../protocol/stream.js';
import { CLOSE_CODES, StreamSession, type ServerFigures } from './session.js';
import { CAMERA_PATTERN, DEFAULT_CAMERA, DEFAULT_LINE, detectQuerySchema, LINE_PATTERN, MAX_REQUEST_TIMEOUT_MS, PRIORITIES } from '../protocol/options.js';
import { declaredKind, isHighPriority, keyOf, kindFromIdentity, mayClaimReserve, type ConnectionEntry, type Refusal } from '../connections/index.js';

/** A line, or "*" for every line (subscriptions only). */
const SUBSCRIBABLE_LINE = `^(\\*|${LINE_PATTERN.slice(1, -1)})$`;
/** How long app.close() lets stream connections finish their close handshake. */
const SHUTDOWN_GRACE_MS = 1000;

const StreamQuerySchema = Type.Object(
  {
    line: Type.Optional(Type.String({ pattern: LINE_PATTERN })),
    /** The camera of the frames sent on this connection (a frame's header may name another). */
    camera: Type.Optional(Type.String({ pattern: CAMERA_PATTERN })),
    /** Comma-separated lines (or "*") to subscribe to from the start. */
    lines: Type.Optional(Type.String({ pattern: `^(\\*|${LINE_PATTERN.slice(1, -1)})(,(\\*|${LINE_PATTERN.slice(1, -1)}))*$` })),
    /** camera, dashboard, api_script or system (the X-Client-Kind header wins); anything else: inferred from the role. */
    client_kind: Type.Optional(Type.String()),
    /** `high`: may use the connections kept by connection_reserve_high. */
    priority: Type.Optional(Type.Union(PRIORITIES.map((p) => Type.Literal(p)))),
  },
  { additionalProperties: false },
);
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

/** A stream refused by the connection limits: accepted, then closed with 1013 so that clients back off and retry. */
function refuseStream(socket: WebSocket, request: FastifyRequest, refusal: Refusal): void {
  request.log.info(
    { event: 'connection_refused', transport: 'websocket', reason: refusal.reason, remote_address: request.ip },
    `stream refused: ${refusal.message}`,
  );
  try {
    socket.close(CLOSE_CODES.TRY_AGAIN_LATER, `too many connections: ${refusal.reason}`);
  } catch {
    socket.terminate();
  }
  setTimeout(() => socket.terminate(), SHUTDOWN_GRACE_MS * 2).unref();
}

/** GET /v1/stream (WebSocket): see src/protocol/stream.ts. */
export async function streamRoutes(app: FastifyInstance): Promise<void> {
  const { config, models, metrics, store, events, observers, lines: lineRegistry, live } = app.sightline;
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
      await Promise.race([Promise.all(open.map((s) => s.done)), new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_GRACE_MS)))]);
      clearTimeout(timer);
      for (const client of app.websocketServer.clients) client.terminate();
      await new Promise<void>((resolve) => app.websocketServer.close(() => resolve()));
    },
  });

  app.route<{ Querystring: StreamQuery }>({
    method: 'GET',
    url: '/v1/stream',
    // Cameras (ingest) send frames; viewers (dashboards, operators) subscribe to lines. Either opens it.
    config: { role: ['ingest', 'viewer'], socketRoles: { frames: 'ingest', subscribe: 'viewer' } },
    schema: {
      summary: 'Open a stream (WebSocket)',
      description:
        'A WebSocket upgrade (GET with Upgrade: websocket). Cameras (ingest role) send binary image frames and get one result, error or drop notice per frame; viewers subscribe to lines (`lines`, or subscribe messages) and get their live results and job events; both get periodic status messages. Frame format, messages, backpressure and close codes: docs/stream.md and src/protocol/stream.ts. Browsers, which cannot set headers on a WebSocket, may send the credential as ?access_token=. Refused by the connection limits after the upgrade: close code 1013.',
      tags: ['stream'],
      security: [{ bearer: [] }, { apiKey: [] }, { accessToken: [] }],
      querystring: StreamQuerySchema,
      response: {
        101: { type: 'null', description: 'Switching Protocols: the WebSocket session begins' },
        400: errorResponse(`INVALID_REQUEST: a bad query, or \`lines\` names more lines than stream_max_subscriptions`),
        403: errorResponse('FORBIDDEN: `lines` needs the viewer role'),
        426: errorResponse('INVALID_REQUEST: a plain GET without Upgrade: websocket (Upgrade: websocket header)'),
      },
    },
    // Checked before the upgrade, so a bad query is an HTTP 400 with an error body.
    preHandler: async function checkStreamQuery(request) {
      const lines = request.query.lines?.split(',') ?? [];
      if (new Set(lines).size > config.stream_max_subscriptions) {
        throw new Errors.INVALID_REQUEST(`lines names ${new Set(lines).size} lines, more than the limit of ${config.stream_max_subscriptions}`);
      }
      if (request.query.line) request.line = request.query.line;
    },
    handler: async function streamOverHttp(request, reply) {
      const message = 'GET /v1/stream is a WebSocket endpoint: send an Upgrade: websocket request';
      // Answered here, not thrown: the request log reads its code from request.failure.
      request.failure = { code: 'INVALID_REQUEST', err: Object.assign(new Error(message), { code: 'INVALID_REQUEST' }) };
      reply.status(426).header('upgrade', 'websocket');
      return { error: { code: 'INVALID_REQUEST', message } };
    },
    wsHandler: function streamHandler(socket, request) {
      if (request.connectionRefusal) return refuseStream(socket, request, request.connectionRefusal);
      const query = request.query as StreamQuery;
      const lines = [...new Set(query.lines?.split(',') ?? [])];
      const { connections } = app;
      // The session takes the registry place of the socket that carried its upgrade.
      let session: StreamSession | undefined;
      const raw = request.raw.socket as Socket | undefined;
      const connection: ConnectionEntry = connections.openWebSocket(raw, {
        remoteAddress: request.ip,
        remotePort: raw?.remotePort,
        userAgent: request.headers['user-agent'],
        key: keyOf(request.identity),
        clientKind: declaredKind(request.headers['x-client-kind'], query.client_kind) ?? kindFromIdentity(request.identity),
        line: query.line,
        high: isHighPriority(query, request.headers['x-priority']) && mayClaimReserve(request.identity),
        close: (code, reason) => session?.close(code, reason, 'closed_by_admin'),
      });
      // Checked once at the upgrade, the credentials are watched for as long as the session lives.
      const unwatch = app.credentialWatch.watch(request.identity, (why) => {
        request.log.info({ event: 'stream_credentials_ended', reason: why, key: connection.key }, `stream closed: credentials ${why}`);
        session?.close(CLOSE_CODES.CREDENTIALS_INVALID, `credentials ${why}`, `credentials_${why}`);
      });
      session = new StreamSession(
        socket,
        {
          id: connection.id,
          remoteAddress: request.ip,
          clientKind: connection.clientKind,
          defaultLine: query.line ?? DEFAULT_LINE,
          defaultCamera: query.camera ?? DEFAULT_CAMERA,
          lines,
        },
        {
          config,
          models,
          metrics,
          store,
          events,
          observers,
          lines: lineRegistry,
          logger: request.log,
          limits,
          headerCheck,
          messageChecks,
          figures,
          onClosed: (s) => {
            sessions.delete(s);
            unwatch();
            connections.remove(connection);
          },
          onActivity: (message) => (message ? connections.messageReceived(connection) : connections.touch(connection)),
          onLine: (line) => connections.noteLine(connection, line),
        },
      );
      sessions.add(session);
      session.start();
    },
  });
}
