// Rate-limit buckets in Redis (rate_limit_url): the Lua bucket against the local
// Redis, fail-open while Redis is away, and two real API processes sharing one
// bucket per key (the combined rate is the configured one, not twice it).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { RedisTokenBuckets, BUCKET_KEY_PREFIX } from '../src/auth/rate-limit/redis-buckets.js';
import { TokenBuckets } from '../src/auth/rate-limit/token-bucket.js';
import { redisProbe } from '../src/auth/rate-limit/index.js';
import { authApp, bearer } from './auth-helpers.js';
import { LogCapture, tempDir } from './helpers/fixtures.js';
import { CLI, cleanups, ROOT, SightlineProcess, waitFor } from './helpers/cli-process.js';
import { requireOrSkip } from './helpers/requirements.js';

const REDIS = process.env.SIGHTLINE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';

async function redisUp(): Promise<boolean> {
  const probe = new Redis(REDIS, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    return (await probe.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}
const available = await redisUp();

/** A Redis URL whose keys are this run's own (ioredis takes keyPrefix from the URL), and a client to look at them. */
function isolated(t: TestContext): { url: string; prefix: string; admin: Redis } {
  const prefix = `sightline-test-${randomUUID().slice(0, 8)}:`;
  const admin = new Redis(REDIS);
  t.after(async () => {
    const keys = await admin.keys(`${prefix}*`);
    if (keys.length > 0) await admin.del(...keys);
    admin.disconnect();
  });
  return { url: `${REDIS}?keyPrefix=${encodeURIComponent(prefix)}`, prefix, admin };
}

function buckets(t: TestContext, url: string, rate: number, burst: number): RedisTokenBuckets {
  const b = new RedisTokenBuckets(url, rate, burst);
  t.after(() => b.close());
  return b;
}

async function connected(b: RedisTokenBuckets): Promise<void> {
  await waitFor(() => b.redis.status === 'ready', 'the Redis connection', 5000);
}

test('redis buckets: a burst passes, then refusals with the time to the next token; the same answers as the in-process buckets', async (t) => {
  if (!requireOrSkip(t, available, `Redis at ${REDIS}`)) return;
  const { url } = isolated(t);
  // 0.01/s: no token comes back while the test runs, so both sequences are deterministic.
  const shared = buckets(t, url, 0.01, 5);
  await connected(shared);
  const local = new TokenBuckets(0.01, 5);
  for (let i = 0; i < 8; i++) {
    const [r, l] = [await shared.take('key:a'), local.take('key:a')];
    assert.equal(r.allowed, l.allowed, `take ${i}: allowed`);
    assert.equal(r.remaining, l.remaining, `take ${i}: remaining`);
    // Both count from their own clock: within a few ms of 100 s per token.
    assert.ok(Math.abs(r.resetMs - l.resetMs) < 50, `take ${i}: reset ${r.resetMs} vs ${l.resetMs}`);
  }
  assert.deepEqual((await shared.take('key:b')).remaining, 4, 'another key has its own bucket');
});

test('redis buckets: tokens come back at the configured rate, never above the burst', async (t) => {
  if (!requireOrSkip(t, available, `Redis at ${REDIS}`)) return;
  const { url } = isolated(t);
  const rate = 20;
  const b = buckets(t, url, rate, 40);
  await connected(b);
  while ((await b.take('k')).allowed);
  const emptied = Date.now();
  await new Promise((r) => setTimeout(r, 600));
  let back = 0;
  const before = Date.now();
  while ((await b.take('k')).allowed) back++;
  const after = Date.now();
  // Between what had refilled when the counting started and when it ended (one token of slack each way).
  const low = Math.floor(((before - emptied) / 1000) * rate) - 1;
  const high = Math.ceil(((after - emptied + 20) / 1000) * rate) + 1;
  assert.ok(back >= low && back <= high, `${back} tokens came back in ~${after - emptied} ms at ${rate}/s (expected ${low}–${high})`);
  // A long pause refills to the burst and no further.
  const small = buckets(t, url, 20, 3);
  await connected(small);
  while ((await small.take('full')).allowed);
  // 400 ms at 20/s would be 8 tokens.
  await new Promise((r) => setTimeout(r, 400));
  let allowed = 0;
  while ((await small.take('full')).allowed) allowed++;
  assert.equal(allowed, 3, 'a refilled bucket holds burst tokens');
});

test('redis buckets: the hash expires once the bucket would be full again; the script survives SCRIPT FLUSH', async (t) => {
  if (!requireOrSkip(t, available, `Redis at ${REDIS}`)) return;
  const { url, prefix, admin } = isolated(t);
  const b = buckets(t, url, 10, 3);
  await connected(b);
  await b.take('ttl');
  const key = `${prefix}${BUCKET_KEY_PREFIX}ttl`;
  const state = await admin.hgetall(key);
  assert.equal(Number(state.tokens), 2);
  assert.ok(Number(state.at) > 1.6e12, 'at is a time in ms');
  const ttl = await admin.pttl(key);
  // One token short of full at 10/s: 100 ms, plus 1 s of slack.
  assert.ok(ttl > 0 && ttl <= 1100, `pttl ${ttl}`);
  await waitFor(async () => (await admin.exists(key)) === 0, 'the bucket key to expire', 5000);
  // Redis forgets scripts on restart or SCRIPT FLUSH: EVALSHA fails with NOSCRIPT and the script is sent again.
  await admin.script('FLUSH');
  const take = await b.take('ttl');
  assert.equal(take.allowed, true);
  assert.equal(take.remaining, 2, 'a forgotten bucket is a full one');
});

test('redis buckets: many clients on one key never get more than the burst between them', async (t) => {
  if (!requireOrSkip(t, available, `Redis at ${REDIS}`)) return;
  const { url } = isolated(t);
  const burst = 100;
  const clients = Array.from({ length: 20 }, () => buckets(t, url, 0.001, burst));
  await Promise.all(clients.map(connected));
  const takes = await Promise.all(clients.flatMap((c) => Array.from({ length: 20 }, () => c.take('contended'))));
  const allowed = takes.filter((x) => x.allowed);
  assert.equal(allowed.length, burst, `${allowed.length} of ${takes.length} concurrent takes allowed`);
  // Each allowed take saw a distinct count of tokens left: the script ran alone every time.
  assert.deepEqual(
    allowed.map((x) => x.remaining).sort((a, b) => a - b),
    Array.from({ length: burst }, (_, i) => i),
  );
});

/** A TCP proxy to Redis that the test can cut (closing every connection, refusing new ones) and restore. */
async function cutProxy(t: TestContext): Promise<{ url: string; cut: () => Promise<void>; restore: () => Promise<void> }> {
  const target = new URL(REDIS);
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve) => {
      server = createServer((client) => {
        const upstream = connect(Number(target.port || 6379), target.hostname);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('error', () => undefined);
          s.on('close', () => sockets.delete(s));
        }
        client.pipe(upstream).pipe(client);
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      });
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as { port: number }).port;
        resolve();
      });
    });
  const cut = async () => {
    await new Promise<void>((resolve) => {
      server!.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
  };
  await listen();
  t.after(cut);
  return { url: `redis://127.0.0.1:${port}${target.pathname}`, cut, restore: listen };
}

test('rate limit over Redis fails open to per-process buckets while Redis is away, logs once, counts it, and shares again when it is back', async (t) => {
  if (!requireOrSkip(t, available, `Redis at ${REDIS}`)) return;
  const { prefix } = isolated(t);
  const proxy = await cutProxy(t);
  const logs = new LogCapture();
  const url = `${proxy.url}?keyPrefix=${encodeURIComponent(prefix)}`;
  const { app, close } = await authApp({ rate_limit_per_second: 0.01, rate_limit_burst: 3, rate_limit_url: url }, logs);
  t.after(close);
  const key = (await app.apiKeys.create('redis-outage', ['viewer'])).key;
  const get = () => app.inject({ url: '/v1/models', remoteAddress: '10.1.2.3', headers: bearer(key) });
  const errors = async () =>
    Number(/sightline_rate_limit_backend_errors_total (\d+)/.exec((await app.inject({ url: '/metrics', headers: bearer(key) })).body)?.[1] ?? 'NaN');

  // Shared: the bucket is in Redis.
  await waitFor(async () => (await get()).headers['ratelimit-remaining'] === '2', 'a take answered by Redis', 5000);
  const admin = new Redis(REDIS);
  t.after(() => admin.disconnect());
  assert.equal(await admin.exists(`${prefix}${BUCKET_KEY_PREFIX}key:redis-outage`), 1, 'the bucket lives in Redis');
  assert.equal(await errors(), 0);

  await proxy.cut();
  // Redis away: requests are still answered, limited by this process's own bucket (burst 3, fresh).
  const during = [];
  for (let i = 0; i < 5; i++) during.push((await get()).statusCode);
  assert.deepEqual(during, [200, 200, 200, 429, 429], 'per-process buckets answer while Redis is away');
  assert.ok((await errors()) >= 5, 'every take Redis did not answer is counted');
  const down = logs.lines.filter((l) => l.event === 'rate_limit_backend_down');
  assert.equal(down.length, 1, 'one warning per outage, not one per request');

  await proxy.restore();
  // ioredis reconnects by itself; the shared bucket (2 tokens left) answers again.
  await waitFor(async () => (await get()).headers['ratelimit-remaining'] === '1', 'the shared bucket answering again', 10_000);
  assert.equal(logs.lines.filter((l) => l.event === 'rate_limit_backend_up').length, 1);
  assert.equal(logs.lines.filter((l) => l.event === 'rate_limit_backend_down').length, 1);
});

/** Sends GET /v1/models with `key` to every base URL, `concurrency` at a time each, for `ms`; counts 200s and 429s. */
async function load(bases: string[], key: string, ms: number, concurrency: number): Promise<{ ok: number; limited: number; other: number; seconds: number }> {
  const counts = { ok: 0, limited: 0, other: 0 };
  const started = Date.now();
  const until = started + ms;
  const loop = async (base: string) => {
    while (Date.now() < until) {
      const res = await fetch(`${base}/v1/models`, { headers: bearer(key) });
      await res.arrayBuffer();
      if (res.status === 200) counts.ok++;
      else if (res.status === 429) counts.limited++;
      else counts.other++;
    }
  };
  await Promise.all(bases.flatMap((base) => Array.from({ length: concurrency }, () => loop(base))));
  return { ...counts, seconds: (Date.now() - started) / 1000 };
}

test('two API processes sharing Redis allow the configured rate between them; without Redis, about twice it', async (t) => {
  if (!requireOrSkip(t, available, `Redis at ${REDIS}`)) return;
  const defer = cleanups(t);
  const { url } = isolated(t);
  const tmp = tempDir('sightline-rl-redis-');
  defer(tmp.cleanup);
  const models = join(tmp.dir, 'models');
  mkdirSync(models);
  const data = join(tmp.dir, 'data');
  const rate = 50;
  const burst = 20;
  const seconds = 10;
  // One API key in the results database both processes share (auth=on: loopback callers are limited too).
  const key = execFileSync(process.execPath, [...CLI, 'keys', 'create', '--name', 'load', '--role', 'viewer', '--data-dir', data], {
    cwd: ROOT,
    encoding: 'utf8',
  }).trim();

  const start = (name: string, limitUrl: string | undefined) => {
    const p = new SightlineProcess(name, [
      'serve',
      ...['--host', '127.0.0.1', '--port', '0', '--auth', 'on', '--no-worker', '--models-dir', models, '--data-dir', data],
      ...['--queue-url', `sqlite:${join(tmp.dir, `${name}-queue.db`)}`, '--no-snapshots'],
      ...['--rate-limit-per-second', String(rate), '--rate-limit-burst', String(burst), '--log-level', 'info'],
      ...(limitUrl ? ['--rate-limit-url', limitUrl] : []),
    ]);
    defer(() => p.kill());
    return p;
  };
  const run = async (limitUrl: string | undefined, label: string) => {
    const procs = [start(`${label}-a`, limitUrl), start(`${label}-b`, limitUrl)];
    const bases = await Promise.all(procs.map((p) => p.baseUrl(60_000)));
    const result = await load(bases, key, seconds * 1000, 8);
    await Promise.all(procs.map((p) => p.kill()));
    return result;
  };

  const shared = await run(url, 'redis');
  assert.equal(shared.other, 0, 'only 200 and 429 answers');
  assert.ok(shared.limited > shared.ok, `the load was over the limit (${shared.ok} allowed, ${shared.limited} refused)`);
  // One bucket for both: burst once, then the rate, for the whole run.
  const expected = burst + rate * shared.seconds;
  const tolerance = 0.1 * expected;
  assert.ok(
    Math.abs(shared.ok - expected) <= tolerance,
    `with Redis: ${shared.ok} allowed in ${shared.seconds.toFixed(1)} s, expected ${expected.toFixed(0)} ± ${tolerance.toFixed(0)}`,
  );

  const perProcess = await run(undefined, 'local');
  assert.equal(perProcess.other, 0, 'only 200 and 429 answers');
  const twice = 2 * (burst + rate * perProcess.seconds);
  assert.ok(
    Math.abs(perProcess.ok - twice) <= 0.1 * twice,
    `without Redis: ${perProcess.ok} allowed in ${perProcess.seconds.toFixed(1)} s, expected about ${twice.toFixed(0)} (each process its own bucket)`,
  );
  process.stdout.write(
    `# rate limit ${rate}/s burst ${burst}, 2 processes, ${seconds} s: with Redis ${shared.ok} allowed (expected ${expected.toFixed(0)}), ` +
      `without ${perProcess.ok} (expected ${twice.toFixed(0)})\n`,
  );
});

test('the readiness probe of the rate-limit Redis says when it is reachable and when not', async (t) => {
  if (!requireOrSkip(t, available, `Redis at ${REDIS}`)) return;
  const proxy = await cutProxy(t);
  const probe = redisProbe(proxy.url, 300);
  t.after(() => probe.close());
  await waitFor(
    () =>
      probe.probe().then(
        () => true,
        () => false,
      ),
    'the probe to pass',
    5000,
  );
  await proxy.cut();
  await assert.rejects(probe.probe());
  await proxy.restore();
  await waitFor(
    () =>
      probe.probe().then(
        () => true,
        () => false,
      ),
    'the probe to pass again after the reconnect',
    10_000,
  );
});
