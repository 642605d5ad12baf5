import { hasRole, type Identity } from '../auth/identity.js';
import { CLIENT_KINDS, type ClientKind } from './types.js';

/**
 * Routes of machines watching the server (scrapes, probes): their connections
 * are `system`, and a GET of one that the connection limits would refuse is
 * served from max_probe_connections instead, so that a flood never makes a pod
 * look dead to its orchestrator.
 */
export const SYSTEM_ROUTES: ReadonlySet<string> = new Set(['/metrics', '/livez', '/readyz']);

/** Whether a request is a probe or scrape that the probe allowance may serve. */
export function isProbe(method: string, route: string | undefined): boolean {
  return (method === 'GET' || method === 'HEAD') && SYSTEM_ROUTES.has(route ?? '');
}

/**
 * Who may claim the high-priority reserve: a caller that proved itself with an
 * API key or JWT holding `ingest` or `admin` (cameras, the operator's tools).
 * Writing `priority=high` is not enough, and neither is being trusted without
 * credentials (loopback in auth=auto, everyone in auth=off): a flood from the
 * same host must not reach the places kept for the line.
 */
export function mayClaimReserve(identity: Identity | undefined): boolean {
  if (!identity || (identity.via !== 'api_key' && identity.via !== 'jwt')) return false;
  return hasRole(identity, 'ingest');
}

const KINDS: ReadonlySet<string> = new Set(CLIENT_KINDS);

/** A declared client kind (`X-Client-Kind`, `client_kind`) when it is one of CLIENT_KINDS (any case), else undefined. */
export function declaredKind(...values: (string | string[] | undefined)[]): ClientKind | undefined {
  for (const raw of values) {
    const value = (Array.isArray(raw) ? raw[0] : raw)?.trim().toLowerCase();
    if (value && KINDS.has(value)) return value as ClientKind;
  }
  return undefined;
}

/** The kind a caller's role suggests: ingest → camera, viewer or reviewer → dashboard, admin, several or none → api_script. */
export function kindFromIdentity(identity: Identity | undefined): ClientKind {
  const roles = identity?.roles ?? [];
  if (roles.includes('admin')) return 'api_script';
  if (roles.includes('ingest')) return 'camera';
  if (roles.includes('viewer') || roles.includes('reviewer')) return 'dashboard';
  return 'api_script';
}

/**
 * The name that per-key limits and the admin list go by: the API key name or
 * the JWT subject. Callers that presented no credentials (loopback, auth off)
 * have none: they are limited per address only.
 */
export function keyOf(identity: Identity | undefined): string | null {
  if (!identity) return null;
  return identity.via === 'api_key' || identity.via === 'jwt' ? identity.name : null;
}

/** `priority=high` in the query or `X-Priority: high`. */
export function isHighPriority(query: unknown, header: string | string[] | undefined): boolean {
  const q = (query as { priority?: unknown } | null | undefined)?.priority;
  if (q === 'high' || (Array.isArray(q) && q.includes('high'))) return true;
  const h = Array.isArray(header) ? header[0] : header;
  return h?.trim().toLowerCase() === 'high';
}

/** IPv4 clients of a dual-stack listener show as `::ffff:a.b.c.d`: count them as `a.b.c.d`. */
export function normalizeAddress(address: string | undefined): string {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
