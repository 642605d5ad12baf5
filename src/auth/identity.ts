/**
 * Who a request is, as the auth layer decided, and what each route needs.
 * Declared here, before any back end, so that the connection registry, rate
 * limits and routes share one vocabulary.
 */

/** Roles a credential carries. `admin` includes `viewer` and `ingest`. */
export const ROLES = ['ingest', 'viewer', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** What a route requires: a role, or `public` (no credentials at all: /livez, /readyz). */
export type RouteRole = Role | 'public';

export interface Identity {
  /** API key name, JWT subject, or `loopback` / `anonymous` when auth did not apply. */
  name: string;
  /** How the caller was identified. */
  via: 'api_key' | 'jwt' | 'loopback' | 'auth_off';
  roles: readonly Role[];
  /** API key id (for per-key limits and revocation); absent for JWTs and unauthenticated callers. */
  keyId?: string;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The role this route needs; every route states one (a test checks it). */
    role?: RouteRole;
  }
  interface FastifyRequest {
    /** Set by the auth hook (onRequest) before any handler runs. */
    identity?: Identity;
  }
}
