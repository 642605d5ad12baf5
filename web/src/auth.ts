import { reactive, ref } from 'vue';

export type Role = 'admin' | 'reviewer' | 'viewer' | 'ingest';

const STORAGE_KEY = 'sightline.key';

function stored(): string {
  try {
    return sessionStorage.getItem(STORAGE_KEY) ?? '';
  } catch {
    return '';
  }
}

/**
 * The credential and what it may do.
 *
 * - The API key or JWT is kept in sessionStorage only: it lives as long as the
 *   browser tab, never in localStorage or a cookie. With `auth: auto` on the
 *   server's own PC no credential is needed and none is asked for.
 * - A 401 from any request (api.ts) opens the login prompt (`needLogin`).
 * - Sightline has no "who am I" route, so the roles are inferred by probing,
 *   without side effects (`probe()`):
 *   - `GET /v1/admin/connections?limit=1`: 200 → admin, which holds every role;
 *   - else `GET /v1/lines`: 200 → viewer (403 → not);
 *   - else `POST /v1/results/role-probe/review` with an invalid body
 *     (`{"status":"probe"}`): the role is checked before the body, so 403 → not a
 *     reviewer, 400 → reviewer; nothing can be stored;
 *   - ingest is not probed (it would need an image); `can('ingest')` is true for
 *     admin only. The dashboard never sends images.
 *   A 401 on the first probe → the login prompt.
 *   The hiding is a convenience: the server refuses what a role may not do (403).
 */
export const auth = {
  key: ref(stored()),
  needLogin: ref(false),
  loginError: ref(''),
  state: reactive({ probed: false, roles: [] as Role[] }),

  can(role: Role): boolean {
    const roles = auth.state.roles;
    if (roles.includes('admin')) return true;
    if (role === 'viewer') return roles.includes('viewer') || roles.includes('reviewer');
    return roles.includes(role);
  },

  requireLogin(): void {
    auth.needLogin.value = true;
  },

  setKey(key: string): void {
    auth.key.value = key.trim();
    try {
      if (auth.key.value) sessionStorage.setItem(STORAGE_KEY, auth.key.value);
      else sessionStorage.removeItem(STORAGE_KEY);
    } catch {
      // kept in memory only
    }
  },

  logout(): void {
    auth.setKey('');
    auth.state.roles = [];
    auth.state.probed = false;
    auth.needLogin.value = true;
    for (const fn of listeners) fn();
  },

  /** Infers the roles (see above). Returns false when the credential is refused (401) or the server is unreachable. */
  async probe(): Promise<boolean> {
    const headers: Record<string, string> = { 'x-client-kind': 'dashboard', ...(auth.key.value ? { authorization: `Bearer ${auth.key.value}` } : {}) };
    const status = async (method: string, path: string, body?: string) => {
      try {
        const res = await fetch(new URL(path, document.baseURI), {
          method,
          headers: body ? { ...headers, 'content-type': 'application/json' } : headers,
          body,
          cache: 'no-store',
        });
        return res.status;
      } catch {
        return 0;
      }
    };
    const admin = await status('GET', 'v1/admin/connections?limit=1');
    if (admin === 0) return false;
    if (admin === 401) {
      auth.state.roles = [];
      auth.needLogin.value = true;
      return false;
    }
    let roles: Role[];
    if (admin === 200) roles = ['admin', 'reviewer', 'viewer', 'ingest'];
    else {
      roles = [];
      if ((await status('GET', 'v1/lines')) === 200) roles.push('viewer');
      const review = await status('POST', 'v1/results/role-probe/review', '{"status":"probe"}');
      if (review !== 403 && review !== 401 && review !== 0) roles.push('reviewer', 'viewer');
    }
    auth.state.roles = [...new Set(roles)];
    auth.state.probed = true;
    auth.needLogin.value = false;
    return true;
  },

  /** Called after a new credential was accepted (pages re-fetch, the live stream reconnects). */
  onChange(fn: () => void): () => void {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },

  /** Tries a credential: kept when the server accepts it. */
  async login(key: string): Promise<boolean> {
    const previous = auth.key.value;
    auth.setKey(key);
    auth.loginError.value = '';
    const ok = await auth.probe();
    if (!ok) {
      auth.setKey(previous);
      auth.loginError.value = 'invalid';
      auth.needLogin.value = true;
      return false;
    }
    for (const fn of listeners) fn();
    return true;
  },
};

const listeners = new Set<() => void>();

/** Shorthand for templates: `can('reviewer')`. */
export const can = (role: Role): boolean => auth.can(role);
