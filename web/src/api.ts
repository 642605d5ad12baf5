import { auth } from './auth';

/** Sightline's error body `{error: {code, message}}` as an exception. status 0: the server could not be reached. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export type Query = Record<string, string | number | boolean | null | undefined>;

/**
 * A URL of this server, relative to the page (so the app also works under a
 * path prefix behind a reverse proxy): `apiUrl('/v1/lines', {line: 'a'})`.
 * Empty, null and undefined query values are left out.
 */
export function apiUrl(path: string, query?: Query): string {
  const url = new URL(path.replace(/^\//, ''), document.baseURI);
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v === undefined || v === null || v === '') continue;
    url.searchParams.set(k, String(v));
  }
  return url.toString();
}

/**
 * Headers of every request: the Authorization header for the current credential
 * (none with auth auto on this PC), and `X-Client-Kind: dashboard` so the
 * connection registry counts the page as a dashboard (docs/connections.md).
 */
export function authHeaders(): Record<string, string> {
  const key = auth.key.value;
  return key ? { authorization: `Bearer ${key}`, 'x-client-kind': 'dashboard' } : { 'x-client-kind': 'dashboard' };
}

async function errorOf(res: Response): Promise<ApiError> {
  let code = `HTTP_${res.status}`;
  let message = res.statusText || code;
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    if (body?.error?.code) code = body.error.code;
    if (body?.error?.message) message = body.error.message;
  } catch {
    // not JSON
  }
  return new ApiError(res.status, code, message);
}

/**
 * One request. A 401 asks for a credential (the login prompt) and throws; every
 * other error answer throws an ApiError with the server's code and message.
 */
export async function request<T>(method: string, path: string, options: { query?: Query; body?: unknown; signal?: AbortSignal } = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json', ...authHeaders() };
  let body: string | undefined;
  if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  let res: Response;
  try {
    res = await fetch(apiUrl(path, options.query), { method, headers, body, signal: options.signal, cache: 'no-store' });
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new ApiError(0, 'NETWORK', (err as Error).message || 'The server cannot be reached');
  }
  if (res.status === 401) auth.requireLogin();
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const api = {
  get: <T>(path: string, query?: Query, signal?: AbortSignal) => request<T>('GET', path, { query, signal }),
  post: <T>(path: string, body?: unknown) => request<T>('POST', path, { body }),
  del: <T>(path: string) => request<T>('DELETE', path),
};

/**
 * An image of this server as a URL an <img> can show. Without a credential it is
 * the URL itself; with one, <img> cannot send the Authorization header, so the
 * image is fetched and shown as a blob: URL (the caller revokes it: see
 * components/AuthImage.vue, which does all this).
 */
export async function fetchImage(url: string, signal?: AbortSignal): Promise<Blob> {
  let res: Response;
  try {
    res = await fetch(url, { headers: authHeaders(), signal });
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new ApiError(0, 'NETWORK', (err as Error).message);
  }
  if (res.status === 401) auth.requireLogin();
  if (!res.ok) throw await errorOf(res);
  return res.blob();
}
