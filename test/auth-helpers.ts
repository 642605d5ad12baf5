// Shared by the auth-* tests: an app with auth on, keys per role, JWTs.
import { SignJWT } from 'jose';
import type { FastifyInstance } from 'fastify';
import type { Role } from '../src/auth/index.js';
import type { Config } from '../src/config/schema.js';
import { startApp, tempDir, type LogCapture } from './helpers/fixtures.js';

export const JWT_SECRET = 'test-secret-that-is-long-enough-for-hs256!';

/** An app with auth on (no model: routes answer without one), closed with the test. */
export async function authApp(overrides: Partial<Config> = {}, logs?: LogCapture): Promise<{ app: FastifyInstance; close: () => Promise<void> }> {
  const models = tempDir('sightline-auth-models-');
  let app: FastifyInstance;
  try {
    app = await startApp(
      { auth: 'on', models_dir: models.dir, auth_jwt_secret: JWT_SECRET, rate_limit_per_second: 0, ...overrides },
      { wait: false, ...(logs ? { logs } : {}) },
    );
  } catch (err) {
    models.cleanup();
    throw err;
  }
  return {
    app,
    close: async () => {
      await app.close();
      models.cleanup();
    },
  };
}

/** An HS256 JWT signed with JWT_SECRET (or `secret`), valid for a minute unless `exp` says otherwise. */
export async function hsToken(claims: Record<string, unknown>, options: { secret?: string; exp?: number | string; sub?: string | null } = {}): Promise<string> {
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt();
  if (options.sub !== null) jwt = jwt.setSubject(options.sub ?? 'svc');
  if (options.exp !== undefined) jwt = jwt.setExpirationTime(options.exp);
  else jwt = jwt.setExpirationTime('1m');
  return jwt.sign(new TextEncoder().encode(options.secret ?? JWT_SECRET));
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** The URL of a route pattern with sample values for its parameters. */
export function sampleUrl(pattern: string): string {
  return pattern.replace(/:line\b/g, 'line-1').replace(/:([A-Za-z_]+)/g, '0123456789abcdef0123456789abcdef');
}

export type Keys = Record<Role, string>;

/** One key per role. */
export async function keysPerRole(app: FastifyInstance): Promise<Keys> {
  const keys = {} as Keys;
  for (const role of ['ingest', 'viewer', 'reviewer', 'admin'] as const) keys[role] = (await app.apiKeys.create(`key-${role}`, [role])).key;
  return keys;
}
