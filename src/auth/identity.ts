/**
 * Who a request is, as the auth layer decided, and what each route needs.
 * Declared here, before any back end, so that the connection registry, rate
 * limits and routes share one vocabulary.
 */

/**
 * Roles a credential carries. `admin` includes every other role; `reviewer`
 * includes `viewer` (a reviewer reads the results it reviews).
 */
export const ROLES = ['ingest', 'viewer', 'reviewer', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** What a route requires: a role, or `public` (no credentials at all: /livez, /readyz). */
export type RouteRole = Role | 'public';

/**
 * A route's `config.role`: one RouteRole, or a list of roles of which any one
 * will do (`['ingest', 'viewer']`: either opens the route).
 */
export type RouteAccess = RouteRole | readonly Role[];

/** What a WebSocket route lets a connection do, by role, once it is open. */
export interface SocketRoles {
  /** Role needed to send binary frames (images). */
  frames?: Role;
  /** Role needed to subscribe to lines (the `subscribe` message and the `lines` query parameter). */
  subscribe?: Role;
}

export interface Identity {
  /** API key name, JWT subject, or `loopback` / `anonymous` when auth did not apply. */
  name: string;
  /** How the caller was identified. */
  via: 'api_key' | 'jwt' | 'loopback' | 'auth_off';
  roles: readonly Role[];
  /** API key id (for per-key limits and revocation); absent for JWTs and unauthenticated callers. */
  keyId?: string;
  /** JWTs: the token's `exp`, in ms since the epoch (open WebSocket sessions are closed once it has passed). */
  expiresAt?: number;
}

/** Roles that a role holds besides itself (admin: all, see hasRole). */
const INCLUDES: Partial<Record<Role, readonly Role[]>> = { reviewer: ['viewer'] };

/** Whether `identity` holds `role`: admin holds every role, reviewer holds viewer; ingest and viewer are separate. */
export function hasRole(identity: Pick<Identity, 'roles'>, role: Role): boolean {
  return identity.roles.some((held) => held === role || held === 'admin' || INCLUDES[held]?.includes(role) === true);
}

/** Whether `identity` may use a route that needs `access` (any one of a list will do). */
export function grants(identity: Pick<Identity, 'roles'>, access: RouteAccess): boolean {
  if (access === 'public') return true;
  if (typeof access === 'string') return hasRole(identity, access);
  return access.some((role) => hasRole(identity, role));
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The role this route needs; every route states one (the auth plugin refuses a route without). */
    role?: RouteAccess;
    /** WebSocket routes: what an open connection may do, by role (see SocketRoles). */
    socketRoles?: SocketRoles;
  }
  interface FastifyRequest {
    /** Set by the auth hook (onRequest) before any handler runs. */
    identity?: Identity;
  }
}
