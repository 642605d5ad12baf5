import type { FastifyInstance } from 'fastify';
import type { Socket } from 'node:net';
import { Type, type Static } from '@sinclair/typebox';
import { Errors } from '../../errors.js';
import { ConnectionListSchema, emptyResponse, errorResponse } from '../api-schemas.js';
import { CLIENT_KINDS, TRANSPORTS } from '../../connections/index.js';
import { LINE_PATTERN } from '../../protocol/options.js';

export const DEFAULT_CONNECTIONS_PAGE = 100;
export const MAX_CONNECTIONS_PAGE = 10_000;

const ListQuerySchema = Type.Object(
  {
    transport: Type.Optional(Type.Union(TRANSPORTS.map((t) => Type.Literal(t)))),
    client_kind: Type.Optional(Type.Union(CLIENT_KINDS.map((k) => Type.Literal(k)))),
    /** API key name or JWT subject. */
    key: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    line: Type.Optional(Type.String({ pattern: LINE_PATTERN })),
    /** Remote address, or `address:port`. */
    remote: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_CONNECTIONS_PAGE })),
  },
  { additionalProperties: false },
);
type ListQuery = Static<typeof ListQuerySchema>;

/** Connection ids are `h`/`w` + base64url (src/connections/registry.ts). */
const IdParamsSchema = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) }, { additionalProperties: false });
const NoQuery = Type.Object({}, { additionalProperties: false });
type IdParams = Static<typeof IdParamsSchema>;

/**
 * GET /v1/admin/connections: open connections (filtered, oldest first, `limit`
 * per page) with counts over all of them; DELETE /v1/admin/connections/:id
 * closes one (204; 404 CONNECTION_NOT_FOUND when no open connection has the id).
 */
export async function adminConnectionRoutes(app: FastifyInstance): Promise<void> {
  const registry = app.connections;
  const { config } = app.sightline;

  app.get<{ Querystring: ListQuery }>(
    '/v1/admin/connections',
    {
      config: { role: 'admin' },
      schema: {
        summary: 'List open connections',
        description:
          'Open HTTP sockets and WebSocket sessions with who and what, filtered, oldest first, `limit` per page (default 100), with counts over all of them and the limits in force.',
        tags: ['admin'],
        querystring: ListQuerySchema,
        response: { 200: ConnectionListSchema },
      },
    },
    async function listConnections(request) {
      const { limit = DEFAULT_CONNECTIONS_PAGE, ...filter } = request.query;
      const { connections, matched } = registry.list(filter, limit);
      return {
        connections,
        matched,
        counts: registry.counts(),
        limits: {
          max_connections: config.max_connections,
          max_connections_per_key: config.max_connections_per_key,
          max_connections_per_address: config.max_connections_per_address,
          connection_reserve_high: config.connection_reserve_high,
          reserved_high: registry.reserved,
          max_websocket_connections: config.max_websocket_connections,
          max_probe_connections: config.max_probe_connections,
        },
      };
    },
  );

  app.delete<{ Params: IdParams }>(
    '/v1/admin/connections/:id',
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Close a connection',
        description: 'Closes an HTTP socket (after the answer in flight) or a WebSocket session (close code 4000).',
        tags: ['admin'],
        params: IdParamsSchema,
        querystring: NoQuery,
        response: { 204: emptyResponse('Closed'), 404: errorResponse('CONNECTION_NOT_FOUND: no open connection has this id') },
      },
    },
    async function closeConnection(request, reply) {
      if (!registry.kick(request.params.id, request.raw.socket as Socket | undefined)) {
        throw new Errors.CONNECTION_NOT_FOUND(JSON.stringify(request.params.id));
      }
      return reply.status(204).send();
    },
  );
}
