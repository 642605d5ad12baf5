import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import type { WebSocket } from 'ws';
import type { Config } from '../config/schema.js';
import { Errors } from '../errors.js';
import { storeUrl } from '../config/locations.js';
import { createApiKeyStore, KEY_PREFIX, type ApiKeyStore } from './api-keys/index.js';
import { isLoopback, presentedCredential, stripQueryToken } from './credentials.js';
import { grants, hasRole, ROLES, type Identity, type Role, type RouteAccess, type SocketRoles } from './identity.js';
import { InvalidToken, jwtVerifierFromConfig, looksLikeJwt, MIN_SECRET_BYTES, type JwtVerifier } from './jwt.js';
import { CredentialWatch } from './session-watch.js';
import { guardSocket } from './socket-guard.js';

export interface AccessControlOptions {
  config: Config;
  /** API keys; by default a store in the result store's database, closed with the app. */
  apiKeys?: ApiKeyStore;
}

/** One route as registered, with the access it declared (for tests and docs). */
export interface RouteAccessEntry {
  method: string;
  url: string;
  role: RouteAccess;
  socketRoles?: SocketRoles;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The API key store the auth hook verifies keys against (`sightline keys` manages the same table). */
    apiKeys: ApiKeyStore;
    /** Every route with the role it needs, in registration order. */
    routeAccess: readonly RouteAccessEntry[];
    /** Ends long-lived sessions (WebSocket streams) whose API key is revoked or whose JWT expires. */
    credentialWatch: CredentialWatch;
  }
}

const ALL_ROLES: readonly Role[] = ROLES;
const LOOPBACK: Identity = Object.freeze({ name: 'loopback', via: 'loopback', roles: ALL_ROLES });
const AUTH_OFF: Identity = Object.freeze({ name: 'anonymous', via: 'auth_off', roles: ALL_ROLES });

function validAccess(role: unknown): role is RouteAccess {
  if (role === 'public') return true;
  if (typeof role === 'string') return (ROLES as readonly string[]).includes(role);
  return Array.isArray(role) && role.length > 0 && role.every((r) => (ROLES as readonly string[]).includes(r));
}

const describeAccess = (access: RouteAccess) => (typeof access === 'string' ? access : access.join(' or '));

/** 401 with the challenge RFC 6750 asks for; `invalid` marks a credential that was presented but refused. */
function unauthorized(reply: FastifyReply, reason: string, invalid: boolean): Error {
  reply.header('www-authenticate', invalid ? 'Bearer realm="sightline", error="invalid_token"' : 'Bearer realm="sightline"');
  return new Errors.UNAUTHORIZED(reason);
}

function forbidden(access: RouteAccess, message?: string): Error {
  const err = new Errors.FORBIDDEN(describeAccess(access));
  if (message) err.message = message;
  return err;
}

/**
 * Identity and access for every route (issue 8):
 *
 * - every route states `config: { role }` (a role, a list of roles of which one
 *   will do, or `public`); a route without one is refused when it is
 *   registered, so none can be forgotten;
 * - an onRequest hook identifies the caller (API key or JWT from
 *   `Authorization: Bearer`, `X-API-Key`, or `?access_token=` on WebSocket
 *   routes; loopback without credentials in `auto` mode; everyone in `off`
 *   mode), sets `request.identity`, and answers 401 UNAUTHORIZED / 403 FORBIDDEN;
 * - WebSocket routes with `socketRoles` refuse, message by message, what the
 *   connection's identity may not send.
 *
 * Register it before any route.
 */
async function accessControlPlugin(app: FastifyInstance, options: AccessControlOptions): Promise<void> {
  const { config } = options;
  const mode = config.auth;
  const apiKeys = options.apiKeys ?? createApiKeyStore(storeUrl(config), config.store_schema ? { schema: config.store_schema } : {});
  if (!options.apiKeys) app.addHook('onClose', async () => apiKeys.close());
  const jwt: JwtVerifier | undefined = mode === 'off' ? undefined : jwtVerifierFromConfig(config);
  const routes: RouteAccessEntry[] = [];
  /** url → socket roles, for WebSocket routes (which also take ?access_token=). */
  const socketRoutes = new Map<string, SocketRoles>();
  app.decorate('apiKeys', apiKeys);
  app.decorate('routeAccess', routes);
  const credentialWatch = new CredentialWatch(apiKeys, config.auth_recheck_interval_ms, app.log);
  app.decorate('credentialWatch', credentialWatch);
  app.addHook('onClose', async () => credentialWatch.stop());

  logMode(app, config, jwt);

  app.addHook('onRoute', (route: RouteOptions & { wsHandler?: unknown; websocket?: boolean }) => {
    const role = route.config?.role;
    const methods = ([] as string[]).concat(route.method);
    if (!validAccess(role)) {
      throw new Error(
        `route ${methods.join(',')} ${route.url} states no valid role (got ${JSON.stringify(role)}): add config: { role: 'public' | ${ROLES.map((r) => `'${r}'`).join(' | ')} } to its options`,
      );
    }
    const socketRoles = route.config?.socketRoles;
    for (const method of methods) routes.push({ method, url: route.url, role, ...(socketRoles ? { socketRoles } : {}) });
    const isSocket = typeof route.wsHandler === 'function' || route.websocket === true;
    if (!isSocket) return;
    socketRoutes.set(route.url, socketRoles ?? {});
    if (socketRoles && (socketRoles.frames || socketRoles.subscribe)) {
      // Runs before @fastify/websocket's own onRoute hook (the root's hooks come first), which picks the handler up.
      const key = route.websocket ? 'handler' : 'wsHandler';
      const original = route[key] as (this: unknown, socket: WebSocket, request: FastifyRequest) => unknown;
      (route as unknown as Record<string, unknown>)[key] = function (this: unknown, socket: WebSocket, request: FastifyRequest) {
        guardSocket(socket, request.identity, socketRoles);
        return original.call(this, socket, request);
      };
    }
  });

  /** The identity in a token, or the reason (for the 401) why there is none. */
  const verifyToken = async (token: string): Promise<Identity | string> => {
    if (token.startsWith(KEY_PREFIX)) return (await apiKeys.verify(token)) ?? 'unknown or revoked API key';
    if (!looksLikeJwt(token)) return 'the credential is neither an API key (sl_…) nor a JWT';
    if (!jwt) return 'JWTs are not accepted: the server has no auth_jwt_secret or auth_jwt_public_key_file';
    try {
      return await jwt.verify(token);
    } catch (err) {
      if (err instanceof InvalidToken) return err.message;
      throw err;
    }
  };

  const identify = async (request: FastifyRequest, reply: FastifyReply, socketRoute: boolean): Promise<Identity> => {
    const presented = presentedCredential(request, socketRoute);
    // Whatever the mode, the token leaves the URL before anything logs or validates it.
    if (socketRoute) stripQueryToken(request);
    if (mode === 'off') return AUTH_OFF;
    // Loopback trusts the absence of credentials only: a credential that is sent is
    // checked as from anywhere, so that a stale or mistyped key fails where it is
    // tested (on the server's host) instead of in production.
    if (mode === 'auto' && presented.kind === 'none' && isLoopback(request.raw.socket?.remoteAddress)) return LOOPBACK;
    if (presented.kind === 'malformed') throw unauthorized(reply, presented.reason, true);
    if (presented.kind === 'none') {
      throw unauthorized(
        reply,
        `send an API key or JWT (Authorization: Bearer …, or X-API-Key${socketRoute ? ', or ?access_token= on WebSocket routes' : ''})`,
        false,
      );
    }
    const found = await verifyToken(presented.token);
    if (typeof found === 'string') throw unauthorized(reply, found, true);
    return found;
  };

  app.addHook('onRequest', async function authenticate(request, reply) {
    const access = request.routeOptions.config?.role;
    if (access === 'public') return;
    // A CORS preflight never carries credentials (browsers leave them out); it
    // only asks what is allowed, and the real request is checked.
    if (request.method === 'OPTIONS' && request.headers.origin && request.headers['access-control-request-method']) return;
    const url = request.routeOptions.url ?? '';
    const socketRoles = socketRoutes.get(url);
    const identity = await identify(request, reply, socketRoles !== undefined);
    request.identity = identity;
    // Unknown routes (no access declared) need a valid identity only; the 404 follows.
    if (access !== undefined && !grants(identity, access)) throw forbidden(access);
    if (socketRoles?.subscribe && !hasRole(identity, socketRoles.subscribe) && (request.query as { lines?: unknown })?.lines !== undefined) {
      throw forbidden(socketRoles.subscribe, `The ${socketRoles.subscribe} role is needed to subscribe to lines (query parameter lines)`);
    }
  });
}

/** One line at start that says who gets in without credentials. */
function logMode(app: FastifyInstance, config: Config, jwt: JwtVerifier | undefined): void {
  const credentials = `API keys (sightline keys)${jwt ? ` or JWTs (${jwt.describe})` : ''}`;
  const fields = { event: 'auth_mode', mode: config.auth, jwt: jwt?.describe ?? null };
  switch (config.auth) {
    case 'off':
      app.log.warn(fields, 'auth off: every client gets every role without credentials (use only on a trusted network)');
      return;
    case 'on':
      app.log.info(fields, `auth on: every route but /livez and /readyz needs ${credentials}, also from loopback`);
      break;
    case 'auto':
      app.log.info(
        fields,
        `auth auto: clients on loopback (127.0.0.0/8, ::1) get every role without credentials (credentials they do send are checked); all others need ${credentials} (behind a reverse proxy on this host, use auth on)`,
      );
      break;
  }
  if (config.auth_jwt_secret && Buffer.byteLength(config.auth_jwt_secret) < MIN_SECRET_BYTES) {
    app.log.warn({ event: 'auth_jwt_weak_secret' }, `auth_jwt_secret is shorter than ${MIN_SECRET_BYTES} bytes: tokens can be forged by guessing it offline`);
  }
}

export const accessControl = fp(accessControlPlugin, { name: 'sightline-access-control', fastify: '5.x' });
