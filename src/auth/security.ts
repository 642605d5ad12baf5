import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config/schema.js';
import { accessControl } from './access-control.js';
import type { ApiKeyStore } from './api-keys/index.js';
import { installRateLimit } from './rate-limit/index.js';
import { installSecurityHeaders } from './security-headers.js';

export interface SecurityOptions {
  config: Config;
  /** API keys; by default a store in the result store's database. */
  apiKeys?: ApiKeyStore;
}

/**
 * Everything in front of the routes, in the order it runs on a request:
 * security headers (helmet), identity and roles (401/403), rate limits (429).
 * Register it on the root instance before any route: it refuses routes that
 * state no role.
 */
async function securityPlugin(app: FastifyInstance, options: SecurityOptions): Promise<void> {
  const { config } = options;
  await installSecurityHeaders(app, Boolean(config.tls_cert_file && config.tls_key_file));
  await app.register(accessControl, { config, ...(options.apiKeys ? { apiKeys: options.apiKeys } : {}) });
  await installRateLimit(app, {
    ratePerSecond: config.rate_limit_per_second,
    burst: config.rate_limit_burst,
    url: config.rate_limit_url,
    onLimited: () => app.sightline?.metrics.rejected.inc({ reason: 'rate_limited' }),
  });
}

export const security = fp(securityPlugin, { name: 'sightline-security', fastify: '5.x' });
