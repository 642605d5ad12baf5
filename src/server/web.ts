import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';
import fastifyStatic from '@fastify/static';
import { Errors } from '../errors.js';

/** Where `npm run build:web` (vite, web/vite.config.ts) writes the dashboard: dist/web, the same from src/ (tsx) and dist/. */
export const WEB_ROOT = fileURLToPath(new URL('../../dist/web/', import.meta.url));

/** The dashboard's routes: its page at `/` (and `/index.html`) and its hashed files under `/assets/`. Not API routes: not in the OpenAPI document. */
export const isDashboardRoute = (url: string): boolean => url === '/' || url === '/index.html' || url.startsWith('/assets/');

export interface WebOptions {
  /** The built app (default WEB_ROOT). */
  root?: string;
}

/** Like every route, these take no unknown query parameter (400 INVALID_REQUEST). */
const schema = { hide: true, querystring: { type: 'object', properties: {}, additionalProperties: false } };

/**
 * The operator dashboard (web/, a Vue single-page app) at `/`, public: the page and
 * its scripts hold no data; every API call it makes needs its route's role, and the
 * page asks for a credential when the server answers 401.
 *
 * - Three routes: `/` and `/index.html` (the page, revalidated on every load:
 *   `no-cache`) and `/assets/*` (files with content hashes in their names: cached
 *   for a year; a name that is not there gets the API's 404). Any other path is
 *   not the dashboard's and still needs credentials, as before. Files are read
 *   when asked for (@fastify/static's sendFile, confined to the build folder), so
 *   a new build is served without a restart.
 * - Not built (tests run from source, `npm run build` never ran): `/` answers
 *   `404 DASHBOARD_NOT_BUILT`, which says what to run.
 * - The security headers (src/auth/security-headers.ts) already fit it: scripts,
 *   styles, images, fonts and WebSocket/fetch from this origin only; images also
 *   from blob: URLs (frames fetched with the credential).
 *
 * Register it after the API routes.
 */
export async function webRoutes(app: FastifyInstance, options: WebOptions = {}): Promise<void> {
  const root = resolve(options.root ?? WEB_ROOT);
  // sendFile only (serve: false): no routes of its own. The folder may not exist yet (not built): no warning.
  await app.register(fastifyStatic, { root, serve: false, decorateReply: true, cacheControl: false, dotfiles: 'deny', index: false, suppressWarning: true });

  const page = async (_request: unknown, reply: FastifyReply) => {
    if (!existsSync(join(root, 'index.html'))) throw new Errors.DASHBOARD_NOT_BUILT();
    reply.header('cache-control', 'no-cache');
    return reply.sendFile('index.html');
  };
  const config = { role: 'public' as const };
  app.get('/', { config, schema }, page);
  app.get('/index.html', { config, schema }, page);
  app.get<{ Params: { '*': string } }>('/assets/*', { config, schema }, async (request, reply) => {
    reply.header('cache-control', 'public, max-age=31536000, immutable');
    return reply.sendFile(join('assets', request.params['*']));
  });
}
