import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBuckets } from '../src/auth/rate-limit/token-bucket.js';
import { authApp, bearer, hsToken } from './auth-helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('rate limit: a burst passes, the next request gets 429 RATE_LIMITED with Retry-After and RateLimit-* headers, and the bucket refills', async (t) => {
  const { app, close } = await authApp({ auth: 'off', rate_limit_per_second: 1, rate_limit_burst: 3 });
  t.after(close);
  const get = () => app.inject({ url: '/v1/models', remoteAddress: '10.9.8.7' });
  const first = await get();
  assert.equal(first.statusCode, 200);
  assert.equal(first.headers['ratelimit-limit'], '3');
  assert.equal(first.headers['ratelimit-remaining'], '2');
  assert.equal((await get()).headers['ratelimit-remaining'], '1');
  assert.equal((await get()).headers['ratelimit-remaining'], '0');
  const limited = await get();
  assert.equal(limited.statusCode, 429);
  assert.deepEqual(Object.keys(limited.json().error).sort(), ['code', 'message']);
  assert.equal(limited.json().error.code, 'RATE_LIMITED');
  assert.equal(limited.headers['retry-after'], '1');
  assert.equal(limited.headers['ratelimit-limit'], '3');
  assert.equal(limited.headers['ratelimit-remaining'], '0');
  assert.equal(limited.headers['ratelimit-reset'], '1');
  // One token comes back every second.
  await sleep(1100);
  const refilled = await get();
  assert.equal(refilled.statusCode, 200, 'a token came back');
  // Probes and scrapes are never limited.
  for (let i = 0; i < 10; i++) {
    for (const url of ['/livez', '/readyz', '/metrics']) assert.notEqual((await app.inject({ url, remoteAddress: '10.9.8.7' })).statusCode, 429, url);
  }
  const metrics = (await app.inject({ url: '/metrics' })).body;
  assert.match(metrics, /sightline_rejected_total\{reason="rate_limited"\} [1-9]/);
});

test('rate limit: per API key (and JWT subject), each key independent of another; per address without one', async (t) => {
  const { app, close } = await authApp({ auth: 'auto', rate_limit_per_second: 1, rate_limit_burst: 2 });
  t.after(close);
  const a = (await app.apiKeys.create('a', ['viewer'])).key;
  const b = (await app.apiKeys.create('b', ['viewer'])).key;
  const from = (remoteAddress: string, headers: Record<string, string> = {}) => app.inject({ url: '/v1/models', remoteAddress, headers });
  // Key a from two addresses shares one bucket.
  assert.equal((await from('10.0.0.1', bearer(a))).statusCode, 200);
  assert.equal((await from('10.0.0.2', bearer(a))).statusCode, 200);
  const limited = await from('10.0.0.3', bearer(a));
  assert.equal(limited.statusCode, 429);
  assert.match(limited.json().error.message, /key:a/);
  // Key b is untouched by a.
  assert.equal((await from('10.0.0.1', bearer(b))).statusCode, 200);
  assert.equal((await from('10.0.0.1', bearer(b))).statusCode, 200);
  assert.equal((await from('10.0.0.1', bearer(b))).statusCode, 429);
  // A JWT subject has its own bucket.
  const token = await hsToken({ roles: ['viewer'] }, { sub: 'mes-gateway' });
  assert.equal((await from('10.0.0.1', bearer(token))).statusCode, 200);
  // Loopback without a key is the trusted local operator (auth=auto): never limited.
  for (let i = 0; i < 10; i++) assert.equal((await from('127.0.0.1')).statusCode, 200, `loopback request ${i}`);
  // A key sent from loopback identifies its holder: its bucket applies.
  assert.equal((await from('127.0.0.1', bearer(a))).statusCode, 429);
});

test('rate limit: without credentials (auth off) each address has its own bucket', async (t) => {
  const { app, close } = await authApp({ auth: 'off', rate_limit_per_second: 1, rate_limit_burst: 2 });
  t.after(close);
  const from = (remoteAddress: string) => app.inject({ url: '/v1/models', remoteAddress });
  assert.equal((await from('10.0.0.1')).statusCode, 200);
  assert.equal((await from('10.0.0.1')).statusCode, 200);
  const limited = await from('10.0.0.1');
  assert.equal(limited.statusCode, 429);
  assert.match(limited.json().error.message, /addr:10\.0\.0\.1/);
  assert.equal((await from('10.0.0.2')).statusCode, 200);
  // Loopback is not exempt when auth is off: only auth=auto trusts it.
  assert.equal((await from('127.0.0.1')).statusCode, 200);
  assert.equal((await from('127.0.0.1')).statusCode, 200);
  assert.equal((await from('127.0.0.1')).statusCode, 429);
});

test('rate limit: 0 turns it off', async (t) => {
  const { app, close } = await authApp({ auth: 'auto', rate_limit_per_second: 0, rate_limit_burst: 1 });
  t.after(close);
  for (let i = 0; i < 20; i++) {
    const res = await app.inject({ url: '/v1/models' });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['ratelimit-limit'], undefined);
  }
});

test('token buckets: burst, sustained rate, refill cap and bounded memory', () => {
  let now = 0;
  const buckets = new TokenBuckets(10, 5, 100, () => now);
  for (let i = 0; i < 5; i++) assert.equal(buckets.take('k').allowed, true);
  const refused = buckets.take('k');
  assert.deepEqual(refused, { allowed: false, remaining: 0, resetMs: 100 });
  now += 100;
  assert.deepEqual(buckets.take('k'), { allowed: true, remaining: 0, resetMs: 500 });
  now += 10_000; // a long pause refills to the burst, never beyond
  for (let i = 0; i < 5; i++) assert.equal(buckets.take('k').allowed, true);
  assert.equal(buckets.take('k').allowed, false);
  for (let i = 0; i < 1000; i++) buckets.take(`client-${i}`);
  assert.ok(buckets.size <= 100, `${buckets.size} buckets kept`);
  assert.throws(() => new TokenBuckets(0, 1), RangeError);
});
