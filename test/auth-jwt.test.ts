import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, UnsecuredJWT } from 'jose';
import { rolesFromClaim } from '../src/auth/jwt.js';
import { tempDir } from './helpers/fixtures.js';
import { authApp, bearer, hsToken, JWT_SECRET } from './auth-helpers.js';

const REMOTE = '10.1.2.3';
const now = () => Math.floor(Date.now() / 1000);

function pemFile(dir: string, name: string, key: KeyObject): string {
  const path = join(dir, name);
  writeFileSync(path, key.export({ type: 'spki', format: 'pem' }));
  return path;
}

async function signed(alg: string, key: KeyObject | Uint8Array, claims: Record<string, unknown>, set: (j: SignJWT) => SignJWT = (j) => j): Promise<string> {
  return set(new SignJWT(claims).setProtectedHeader({ alg }).setSubject('svc').setExpirationTime('1m')).sign(key);
}

test('HS256: accepted with its roles; the subject is the name; expired, not-yet-valid, missing exp and wrong signature are refused', async (t) => {
  const { app, close } = await authApp({ auth_jwt_issuer: 'https://idp.example', auth_jwt_audience: 'sightline' });
  t.after(close);
  const secret = new TextEncoder().encode(JWT_SECRET);
  const good = (set: (j: SignJWT) => SignJWT = (j) => j, claims: Record<string, unknown> = { roles: ['viewer'] }) =>
    signed('HS256', secret, claims, (j) => set(j.setIssuer('https://idp.example').setAudience('sightline')));
  let seen: unknown;
  app.addHook('onResponse', async (request) => {
    seen = request.identity;
  });
  const status = async (token: string, url = '/v1/models') => {
    const res = await app.inject({ url, remoteAddress: REMOTE, headers: bearer(token) });
    return { code: res.statusCode, message: res.statusCode >= 400 ? (res.json().error.message as string) : '' };
  };

  assert.equal((await status(await good())).code, 200);
  const { expiresAt, ...identity } = seen as { expiresAt: number };
  assert.deepEqual(identity, { name: 'svc', via: 'jwt', roles: ['viewer'] });
  // exp (1 min) in ms: open streams close when it passes (auth-stream.test.ts).
  assert.ok(Math.abs(expiresAt - (Date.now() + 60_000)) < 5000, String(expiresAt));
  assert.equal((await status(await good(undefined, { roles: 'ingest viewer' }))).code, 200, 'roles as a space-separated string');
  assert.equal((await status(await good(undefined, { roles: ['ingest'] }))).code, 403);
  assert.equal((await status(await good(undefined, { roles: ['superuser'] }))).code, 403, 'unknown roles are ignored');
  const hs512 = await new SignJWT({ roles: ['viewer'] })
    .setProtectedHeader({ alg: 'HS512' })
    .setSubject('svc')
    .setIssuer('https://idp.example')
    .setAudience('sightline')
    .setExpirationTime('1m')
    .sign(secret);
  assert.equal((await status(hs512)).code, 200);

  const refused: [string, string, RegExp][] = [
    ['expired', await good((j) => j.setExpirationTime(now() - 3600)), /expired/],
    ['not yet valid', await good((j) => j.setNotBefore(now() + 3600)), /nbf/],
    ['wrong issuer', await signed('HS256', secret, { roles: ['viewer'] }, (j) => j.setIssuer('https://evil.example').setAudience('sightline')), /iss/],
    ['no issuer', await signed('HS256', secret, { roles: ['viewer'] }, (j) => j.setAudience('sightline')), /iss/],
    ['wrong audience', await signed('HS256', secret, { roles: ['viewer'] }, (j) => j.setIssuer('https://idp.example').setAudience('other')), /aud/],
    ['wrong signature', await hsToken({ roles: ['viewer'], iss: 'https://idp.example', aud: 'sightline' }, { secret: 'x'.repeat(40) }), /signature/],
    [
      'no exp',
      await new SignJWT({ roles: ['viewer'] })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('svc')
        .setIssuer('https://idp.example')
        .setAudience('sightline')
        .sign(secret),
      /exp/,
    ],
    [
      'no sub',
      await new SignJWT({ roles: ['viewer'] })
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuer('https://idp.example')
        .setAudience('sightline')
        .setExpirationTime('1m')
        .sign(secret),
      /sub/,
    ],
    [
      'alg none',
      new UnsecuredJWT({ roles: ['admin'], sub: 'svc', iss: 'https://idp.example', aud: 'sightline', exp: now() + 60 }).encode(),
      /not accepted|invalid/,
    ],
    [
      'tampered payload',
      (await good()).replace(
        /\.([^.]+)\./,
        (_m, p: string) =>
          `.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), roles: ['admin'] })).toString('base64url')}.`,
      ),
      /signature/,
    ],
  ];
  for (const [what, token, reason] of refused) {
    const { code, message } = await status(token);
    assert.equal(code, 401, what);
    assert.match(message, reason, `${what}: ${message}`);
  }
});

test('RS256 and ES256 with a public key file; an HS256 token signed with that public key (algorithm confusion) is refused', async (t) => {
  const { dir, cleanup } = tempDir('sightline-jwt-');
  t.after(cleanup);
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const { app, close } = await authApp({ auth_jwt_secret: '', auth_jwt_public_key_file: pemFile(dir, 'rsa.pem', rsa.publicKey) });
  t.after(close);
  const status = async (token: string) => (await app.inject({ url: '/v1/models', remoteAddress: REMOTE, headers: bearer(token) })).statusCode;
  assert.equal(await status(await signed('RS256', rsa.privateKey, { roles: ['viewer'] })), 200);
  assert.equal(await status(await signed('PS256', rsa.privateKey, { roles: ['viewer'] })), 200);
  assert.equal(await status(await signed('RS256', rsa.privateKey, { roles: ['viewer'] }, (j) => j.setExpirationTime(now() - 3600))), 401);
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
  assert.equal(await status(await signed('RS256', other.privateKey, { roles: ['viewer'] })), 401, 'signed by another key');
  const pem = new TextEncoder().encode(rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString());
  assert.equal(await status(await signed('HS256', pem, { roles: ['admin'] })), 401, 'no HMAC secret is configured');

  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ecApp = await authApp({ auth_jwt_secret: '', auth_jwt_public_key_file: pemFile(dir, 'ec.pem', ec.publicKey) });
  t.after(ecApp.close);
  const res = await ecApp.app.inject({
    url: '/v1/models',
    remoteAddress: REMOTE,
    headers: bearer(await signed('ES256', ec.privateKey, { roles: ['viewer'] })),
  });
  assert.equal(res.statusCode, 200);
  assert.equal(
    (await ecApp.app.inject({ url: '/v1/models', remoteAddress: REMOTE, headers: bearer(await signed('RS256', rsa.privateKey, { roles: ['viewer'] })) }))
      .statusCode,
    401,
    'an RS256 token against an EC key',
  );
});

test('without a JWT secret or key, JWTs are refused with a reason', async (t) => {
  const { app, close } = await authApp({ auth_jwt_secret: '' });
  t.after(close);
  const res = await app.inject({ url: '/v1/models', remoteAddress: REMOTE, headers: bearer(await hsToken({ roles: ['viewer'] })) });
  assert.equal(res.statusCode, 401);
  assert.match(res.json().error.message, /JWTs are not accepted/);
});

test('a public key file that cannot be read or holds no key stops the start with a clear error', async () => {
  const { dir, cleanup } = tempDir('sightline-jwt-');
  try {
    await assert.rejects(authApp({ auth_jwt_public_key_file: join(dir, 'missing.pem') }), /cannot read auth_jwt_public_key_file/);
    writeFileSync(join(dir, 'junk.pem'), 'not a key');
    await assert.rejects(authApp({ auth_jwt_public_key_file: join(dir, 'junk.pem') }), /holds no PEM public key/);
  } finally {
    cleanup();
  }
});

test('rolesFromClaim: arrays or space-separated strings, known roles only', () => {
  assert.deepEqual(rolesFromClaim(['admin', 'x']), ['admin']);
  assert.deepEqual(rolesFromClaim('viewer  ingest'), ['ingest', 'viewer']);
  assert.deepEqual(rolesFromClaim(undefined), []);
  assert.deepEqual(rolesFromClaim(42), []);
  assert.deepEqual(rolesFromClaim([1, null, 'viewer']), ['viewer']);
});
