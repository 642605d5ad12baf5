import { readFileSync } from 'node:fs';
import type { FastifyInstance, FastifySchema, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import swagger, { type SwaggerTransform } from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { RATE_LIMIT_EXEMPT, type RouteAccess } from '../auth/index.js';
import { ErrorResponseSchema, isErrorResponse } from './api-schemas.js';

/** Where the browsable reference is served (its page, assets and a copy of the document). */
export const DOCS_PREFIX = '/docs';
export const OPENAPI_PATH = '/openapi.json';

const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const TAGS = [
  { name: 'inspection', description: 'Detection on one image, synchronously' },
  { name: 'jobs', description: 'Durable asynchronous jobs and dead letters' },
  { name: 'uploads', description: 'tus 1.0 resumable uploads that become jobs' },
  { name: 'stream', description: 'The /v1/stream WebSocket: frames in, results and live events out' },
  { name: 'results', description: 'Stored results and per-line counts' },
  { name: 'lines', description: 'Lines and cameras: states, frame rates, verdict and review counts' },
  { name: 'models', description: 'The model repository' },
  { name: 'health', description: 'Liveness and readiness probes' },
  { name: 'monitoring', description: 'Prometheus metrics and alert states' },
  { name: 'sources', description: 'Pulled sources: hot folders, snapshot URLs, MJPEG and ffmpeg streams that Sightline reads itself' },
  { name: 'outputs', description: 'Factory outputs (MQTT, webhooks, OPC UA, Modbus): state, outboxes and dead letters' },
  { name: 'admin', description: 'Open connections' },
  { name: 'oip', description: 'The Open Inference Protocol (KServe v2 / Triton HTTP) under /v2: errors are {"error": "…"} (docs/oip.md)' },
];

/**
 * Answers every route can give whatever it does, by status: the connection
 * layer, shutdown and bugs. Appended to what a route documents itself.
 */
const EVERY_ROUTE: Record<string, string> = {
  408: 'REQUEST_TIMEOUT: the headers or body did not arrive within headers_timeout_ms / body_timeout_ms',
  431: 'HEADERS_TOO_LARGE: the header block exceeds max_header_bytes',
  500: 'INTERNAL_ERROR: a bug, logged with its stack',
  503: 'SHUTTING_DOWN: the server is stopping; TOO_MANY_CONNECTIONS: a connection limit is reached (Retry-After)',
};
const WITH_INPUT = { 400: 'INVALID_REQUEST: a query parameter, path parameter or header is malformed, out of range or unknown' };
const RATE_LIMITED = { 429: 'RATE_LIMITED: over rate_limit_per_second for the key or address (Retry-After, RateLimit-* headers)' };
const describeAccess = (access: RouteAccess) => (typeof access === 'string' ? access : access.join(' or '));
const withCredentials = (access: RouteAccess) => ({
  401: 'UNAUTHORIZED: no credentials, or an unknown, revoked or expired API key or JWT (WWW-Authenticate: Bearer)',
  403: `FORBIDDEN: the credentials lack the ${describeAccess(access)} role`,
});

const ERROR_SCHEMA_ID = 'ErrorResponse';
/** An error answer in the document: the shared body by reference, with the codes this route gives. */
const errorRef = (description: string) => ({ description, $ref: `${ERROR_SCHEMA_ID}#` });

/** Request bodies that are not JSON (images, tus bytes), documented from the route's `consumes`. */
function bodyFor(consumes: readonly string[]) {
  const binary = { type: 'string', format: 'binary' };
  const content = Object.fromEntries(
    consumes.map((type) => [
      type,
      {
        schema:
          type === 'multipart/form-data'
            ? { type: 'object', properties: { image: { ...binary, description: 'The image (JPEG, PNG or WebP)' } }, required: ['image'] }
            : binary,
      },
    ]),
  );
  return { content };
}

/**
 * Completes a route's documented schema (never the schema Fastify validates
 * with): the role it needs and the security that applies, the answers every
 * route can give, error bodies by reference, and non-JSON request bodies.
 */
const transform: SwaggerTransform = ({ schema, url, route }) => {
  if (!schema || schema.hide) return { schema, url };
  const access = (route as RouteOptions).config?.role;
  const documented: Record<string, unknown> = { ...((schema.response as Record<string, unknown> | undefined) ?? {}) };
  for (const [status, response] of Object.entries(documented)) {
    if (isErrorResponse(response)) documented[status] = errorRef((response as { description: string }).description);
  }
  const hasInput = Boolean(schema.querystring || schema.params || schema.headers || schema.body);
  const general: Record<string, string> = {
    ...(hasInput ? WITH_INPUT : {}),
    ...(access && access !== 'public' ? withCredentials(access) : {}),
    ...(RATE_LIMIT_EXEMPT.has(url) ? {} : RATE_LIMITED),
    ...EVERY_ROUTE,
  };
  for (const [status, description] of Object.entries(general)) {
    const own = documented[status] as { $ref?: string; description?: string } | undefined;
    if (own === undefined) documented[status] = errorRef(description);
    else if (own.$ref !== undefined) documented[status] = errorRef(`${own.description}; ${description}`);
    // A body of its own (/readyz's 503): either that or an error.
    else
      documented[status] = {
        description: `${own.description}; or ${description}`,
        anyOf: [{ ...own, description: undefined }, { $ref: `${ERROR_SCHEMA_ID}#` }],
      };
  }
  const who = access === 'public' ? 'Public: no credentials needed.' : access ? `Role: ${describeAccess(access)}.` : '';
  const out: FastifySchema & Record<string, unknown> = {
    ...schema,
    description: [schema.description, who].filter(Boolean).join('\n\n'),
    response: documented,
    ...(access === 'public' ? { security: [] } : {}),
    ...(access ? { 'x-sightline-role': access } : {}),
  };
  if (schema.consumes && !schema.body) out.body = bodyFor(schema.consumes);
  return { schema: out, url };
};

/**
 * The OpenAPI 3 document, built by @fastify/swagger from the route schemas:
 * /openapi.json, and a browsable reference at /docs whose page, scripts and
 * styles come from the @fastify/swagger-ui package (factories are offline:
 * nothing is loaded from another host). Both are public: they describe the
 * API and hold no data.
 *
 * Register it on the root instance after the security plugin and before any
 * route: @fastify/swagger collects the routes as they are registered.
 *
 * Response schemas in the routes document answers; they do not shape them.
 * Fastify would serialize with them (fast-json-stringify), which drops every
 * field a schema does not name and coerces types; here every answer is
 * serialized with JSON.stringify, as it is for a route without a response
 * schema, so what a client receives never depends on the documentation.
 */
async function openapiPlugin(app: FastifyInstance): Promise<void> {
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  app.addSchema({ $id: ERROR_SCHEMA_ID, ...ErrorResponseSchema });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Sightline',
        version,
        description:
          'Visual-inspection server: ONNX object detection over HTTP with OK/NG verdicts. Every error is `{"error": {"code", "message"}}` with a stable code (docs/errors.md); every answer carries X-Request-Id.',
      },
      tags: TAGS,
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'An API key (sl_…, `sightline keys create`) or a JWT' },
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'An API key (sl_…)' },
          accessToken: {
            type: 'apiKey',
            in: 'query',
            name: 'access_token',
            description: 'An API key or JWT; WebSocket routes only (browsers cannot set headers there)',
          },
        },
      },
      // Either header will do; auth=auto lets loopback callers in without, auth=off everyone.
      security: [{ bearer: [] }, { apiKey: [] }],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    transform,
  });

  app.get(OPENAPI_PATH, { config: { role: 'public' }, schema: { hide: true } }, async () => app.swagger());
  await app.register(docsUi);
}

/**
 * The reference page. @fastify/swagger-ui and @fastify/static register their
 * routes without a way to pass route options, and access control refuses a
 * route that states no role (from its onRoute hook, which runs before any hook
 * added here): routes registered in this scope, and only here, state `public`.
 */
async function docsUi(scope: FastifyInstance): Promise<void> {
  const route = scope.route as (this: FastifyInstance, options: RouteOptions) => FastifyInstance;
  scope.route = function publicRoute(this: FastifyInstance, options: RouteOptions) {
    return route.call(this, { ...options, config: { role: 'public', ...options.config } });
  } as FastifyInstance['route'];
  await scope.register(swaggerUi, {
    routePrefix: DOCS_PREFIX,
    uiConfig: { deepLinking: true, docExpansion: 'list' },
    theme: { title: 'Sightline API' },
  });
}

export const openapi = fp(openapiPlugin, { name: 'sightline-openapi', fastify: '5.x' });
