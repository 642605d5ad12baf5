/**
 * Result webhooks against real HTTP receivers on this machine (node:http in the
 * test, and examples/webhook_receiver.py under Debian's python3): retries until
 * a receiver takes a result, signatures, dead letters and their replay,
 * Retry-After, filters, and a receiver that never answers not slowing /v1/detect.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../../src/config/schema.js';
import type { WebhookOutput } from '../../src/outputs/webhook/index.js';
import { nextAttemptDelay, retryAfterMs, retryDelay } from '../../src/outputs/webhook/backoff.js';
import { LogCapture, startApp } from '../helpers/fixtures.js';
import { ROOT, waitFor } from '../helpers/cli-process.js';
import { requireOrSkip } from '../helpers/requirements.js';

const OK_IMAGE = readFileSync(join(ROOT, 'samples', 'ok-01.jpg'));
const NG_IMAGE = readFileSync(join(ROOT, 'samples', 'ng-01.jpg'));
const SECRET = 'test-secret-ü';
const PYTHON = '/usr/bin/python3';

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

type Reply = { status: number; headers?: Record<string, string> } | 'hang';

/** A webhook receiver: records every request and answers what `reply` says (`hang`: never). */
class Receiver {
  readonly requests: Received[] = [];
  reply: (req: Received, attemptsOfKey: number) => Reply = () => ({ status: 200 });
  readonly #server: Server;
  readonly #hanging = new Set<ServerResponse>();

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(): Promise<Receiver> {
    const receiver: Receiver = new Receiver(
      createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const got: Received = { path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() };
          receiver.requests.push(got);
          const reply = receiver.reply(got, receiver.attempts(got.path, String(got.headers['idempotency-key'])).length);
          if (reply === 'hang') {
            receiver.#hanging.add(res);
            res.on('close', () => receiver.#hanging.delete(res));
            return;
          }
          res.writeHead(reply.status, reply.headers).end(reply.status >= 300 ? 'receiver says no' : 'ok');
        });
      }),
    );
    await new Promise<void>((resolve) => receiver.#server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  attempts(path: string, key: string): Received[] {
    return this.requests.filter((r) => r.path === path && r.headers['idempotency-key'] === key);
  }

  /** Deduped by Idempotency-Key, as a receiver should: the first accepted body per key on `path`. */
  accepted(path: string): Map<string, Received> {
    const byKey = new Map<string, Received>();
    for (const r of this.requests) {
      const key = String(r.headers['idempotency-key']);
      if (r.path === path && r.headers['x-sightline-accepted'] && !byKey.has(key)) byKey.set(key, r);
    }
    return byKey;
  }

  async close(): Promise<void> {
    for (const res of this.#hanging) res.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** Marks the requests a receiver answered 2xx, so `accepted` can tell them apart. */
function answering(receiver: Receiver, reply: (req: Received, attemptsOfKey: number) => Reply): void {
  receiver.reply = (req, n) => {
    const r = reply(req, n);
    if (r !== 'hang' && r.status >= 200 && r.status < 300) req.headers['x-sightline-accepted'] = '1';
    return r;
  };
}

/** Verifies a request as a receiver must: HMAC-SHA256(secret, "<timestamp>.<body>"), in constant time. */
function signatureValid(req: Received, secret: string): boolean {
  const ts = String(req.headers['x-sightline-timestamp']);
  const expected = Buffer.from('sha256=' + createHmac('sha256', secret).update(`${ts}.${req.body}`).digest('hex'));
  const got = Buffer.from(String(req.headers['x-sightline-signature'] ?? ''));
  return got.length === expected.length && timingSafeEqual(got, expected);
}

async function detect(
  app: FastifyInstance,
  image: Buffer,
  line: string,
  camera: string,
  id: string,
): Promise<{ verdict: string; request_id: string; detections: unknown[] }> {
  const res = await app.inject({
    method: 'POST',
    url: `/v1/detect?line=${line}&camera=${camera}`,
    headers: { 'content-type': 'image/jpeg', 'x-request-id': id },
    payload: image,
  });
  assert.equal(res.statusCode, 200, res.body);
  return res.json();
}

async function metric(app: FastifyInstance, name: string, labels = 'output="webhook"'): Promise<number> {
  const text = (await app.inject('/metrics')).body;
  const m = new RegExp(`^${name}\\{${labels}\\} ([\\d.e+-]+)$`, 'm').exec(text);
  assert.ok(m, `${name}{${labels}} is exported`);
  return Number(m[1]);
}

function webhookOf(app: FastifyInstance): WebhookOutput {
  const output = app.sightline.outputs.get('webhook');
  assert.ok(output, 'the webhook output runs');
  return output as WebhookOutput;
}

async function webhookApp(overrides: Partial<Config>, logs?: LogCapture): Promise<FastifyInstance> {
  return startApp({ webhook_backoff_ms: 20, webhook_backoff_max_ms: 200, webhook_timeout_ms: 2000, ...overrides }, logs ? { logs } : {});
}

test('backoff: full jitter within [0, min(max, base·2^(n-1))], Retry-After in seconds or as a date, capped at the maximum', () => {
  const backoff = { baseMs: 100, maxMs: 1000 };
  assert.equal(
    retryDelay(1, backoff, () => 0.999_999),
    99,
  );
  assert.equal(
    retryDelay(3, backoff, () => 0.999_999),
    399,
  );
  assert.equal(
    retryDelay(30, backoff, () => 0.999_999),
    999,
    'capped',
  );
  assert.equal(
    retryDelay(5, backoff, () => 0),
    0,
    'full jitter reaches 0',
  );
  const now = Date.parse('2030-01-01T00:00:00Z');
  assert.equal(retryAfterMs('7', now), 7000);
  assert.equal(retryAfterMs('Tue, 01 Jan 2030 00:00:03 GMT', now), 3000);
  assert.equal(retryAfterMs('soon', now), undefined);
  assert.equal(retryAfterMs(null, now), undefined);
  assert.equal(
    nextAttemptDelay(1, backoff, 600, () => 0),
    600,
    'Retry-After beats a shorter backoff',
  );
  assert.equal(
    nextAttemptDelay(1, backoff, 60_000, () => 0),
    1000,
    'but not the maximum',
  );
});

test('a receiver that fails 3 times then succeeds gets each result once per URL: signed, same delivery and Idempotency-Key, attempt 4 accepted', {
  timeout: 60_000,
}, async (t) => {
  const receiver = await Receiver.start();
  t.after(() => receiver.close());
  answering(receiver, (_req, n) => (n <= 3 ? { status: 500 } : { status: 200 }));
  const app = await webhookApp({ webhook_urls: `${receiver.url}/a, ${receiver.url}/b?token=x`, webhook_secret: SECRET });
  t.after(() => app.close());
  const output = webhookOf(app);
  assert.match(output.health().detail, /no delivery yet/);

  const posted = new Map<string, { verdict: string; camera: string }>();
  for (let i = 0; i < 6; i++) {
    const id = `wh-${i}-${randomUUID()}`;
    const camera = `cam-${i % 2}`;
    const res = await detect(app, i % 2 ? NG_IMAGE : OK_IMAGE, 'line-1', camera, id);
    posted.set(id, { verdict: res.verdict, camera });
  }
  assert.deepEqual(new Set([...posted.values()].map((p) => p.verdict)), new Set(['ok', 'ng']), 'both verdicts posted');

  await waitFor(
    () => receiver.accepted('/a').size === 6 && receiver.accepted('/b?token=x').size === 6,
    () => `every result accepted on both URLs (${receiver.requests.length} requests so far)`,
    30_000,
  );
  const deliveries = new Set<string>();
  for (const path of ['/a', '/b?token=x']) {
    const accepted = receiver.accepted(path);
    assert.deepEqual(new Set(accepted.keys()), new Set(posted.keys()), `${path}: exactly the posted results, once each after dedupe`);
    for (const [id, expected] of posted) {
      const attempts = receiver.attempts(path, id);
      assert.deepEqual(
        attempts.map((r) => r.headers['x-sightline-attempt']),
        ['1', '2', '3', '4'],
        `${path} ${id}: three failures, then the fourth attempt is taken, and no more`,
      );
      assert.equal(new Set(attempts.map((r) => r.headers['x-sightline-delivery'])).size, 1, 'one delivery id across its attempts');
      assert.equal(new Set(attempts.map((r) => r.body)).size, 1, 'the same bytes on every attempt');
      deliveries.add(String(attempts[0]!.headers['x-sightline-delivery']));
      const body = JSON.parse(accepted.get(id)!.body);
      assert.equal(body.id, id);
      assert.equal(body.type, 'result');
      assert.equal(body.line, 'line-1');
      assert.equal(body.camera, expected.camera);
      assert.equal(body.verdict, expected.verdict);
      assert.equal(body.source, 'sync');
      assert.equal(body.result.request_id, id);
      assert.ok(Date.parse(body.at) > 0);
    }
  }
  assert.equal(deliveries.size, 12, 'each URL has a delivery of its own');
  for (const r of receiver.requests) {
    assert.equal(r.headers['content-type'], 'application/json');
    assert.ok(signatureValid(r, SECRET), `the signature of attempt ${r.headers['x-sightline-attempt']} of ${r.headers['idempotency-key']} verifies`);
    assert.ok(!signatureValid({ ...r, body: r.body.replace('"line-1"', '"line-2"') }, SECRET), 'a changed body does not verify');
    assert.ok(Math.abs(Number(r.headers['x-sightline-timestamp']) - Date.now() / 1000) < 60, 'a current unix timestamp');
  }
  assert.equal(receiver.requests.length, 48, 'no request beyond 4 per delivery');

  assert.equal(await metric(app, 'sightline_output_sent_total'), 12);
  assert.equal(await metric(app, 'sightline_output_failed_total'), 36);
  assert.equal(await metric(app, 'sightline_output_dropped_total', 'output="webhook",reason="dead_letter"'), 0);
  await waitFor(async () => (await metric(app, 'sightline_output_outbox_depth')) === 0, 'outbox depth back to 0', 5000);
  assert.equal(await output.outbox.depth(), 0);
  assert.equal(output.health().connected, true);
  assert.doesNotMatch(output.health().detail, /token/, 'a query (often a token) is not shown');
});

test('filters, dead letters and replay: NG results of the chosen line only; after max attempts a dead letter (counted, logged, health down) that replay delivers; Retry-After is honoured', {
  timeout: 60_000,
}, async (t) => {
  const receiver = await Receiver.start();
  t.after(() => receiver.close());
  answering(receiver, () => ({ status: 500 }));
  const logs = new LogCapture();
  const app = await webhookApp(
    {
      webhook_urls: `${receiver.url}/hook`,
      webhook_lines: 'press-1',
      webhook_verdicts: 'ng',
      webhook_max_attempts: 3,
      webhook_backoff_ms: 10,
      webhook_backoff_max_ms: 2000,
    },
    logs,
  );
  t.after(() => app.close());
  const output = webhookOf(app);

  const ng1 = `ng1-${randomUUID()}`;
  const ng2 = `ng2-${randomUUID()}`;
  assert.equal((await detect(app, OK_IMAGE, 'press-1', 'c', `ok-${randomUUID()}`)).verdict, 'ok');
  assert.equal((await detect(app, NG_IMAGE, 'press-1', 'c', ng1)).verdict, 'ng');
  assert.equal((await detect(app, NG_IMAGE, 'press-2', 'c', `other-${randomUUID()}`)).verdict, 'ng');
  assert.equal((await detect(app, NG_IMAGE, 'press-1', 'c', ng2)).verdict, 'ng');

  const dead = await waitFor(
    async () => {
      const letters = await output.outbox.deadLetters(10);
      return letters.length === 2 ? letters : undefined;
    },
    'two dead letters',
    20_000,
  );
  assert.deepEqual(new Set(dead.map((d) => d.key)), new Set([ng1, ng2]), 'the NG results of press-1, nothing filtered out');
  for (const d of dead) {
    assert.equal(d.attempts, 3);
    assert.match(d.lastError ?? '', /^HTTP 500/);
    assert.equal(JSON.parse(d.payload).url, `${receiver.url}/hook`);
  }
  assert.deepEqual(new Set(receiver.requests.map((r) => r.headers['idempotency-key'])), new Set([ng1, ng2]), 'nothing else was sent');
  assert.equal(receiver.requests.length, 6, 'three attempts each, then no more');
  assert.equal(await metric(app, 'sightline_output_dropped_total', 'output="webhook",reason="dead_letter"'), 2);
  assert.equal(await metric(app, 'sightline_output_failed_total'), 6);
  assert.equal(await output.outbox.depth(), 0, 'dead letters are not waiting');
  const warned = logs.lines.filter((l) => l.event === 'webhook_dead_letter');
  assert.deepEqual(new Set(warned.map((l) => l.key)), new Set([ng1, ng2]));
  assert.ok(warned.every((l) => l.level === 'warn'));
  const down = output.health();
  assert.equal(down.connected, false);
  assert.match(down.detail, new RegExp(`${receiver.url}/hook: HTTP 500`), 'health names the failing URL and error');

  // The receiver is fixed; replaying sends them again, from attempt 1.
  answering(receiver, () => ({ status: 204 }));
  receiver.requests.length = 0;
  assert.equal(await output.outbox.replay(), 2);
  await waitFor(() => receiver.accepted('/hook').size === 2, 'both replayed deliveries accepted', 10_000);
  assert.deepEqual(
    receiver.requests.map((r) => r.headers['x-sightline-attempt']),
    ['1', '1'],
  );
  assert.deepEqual(new Set(receiver.accepted('/hook').keys()), new Set([ng1, ng2]));
  assert.deepEqual(await output.outbox.deadLetters(10), []);
  await waitFor(() => output.health().connected, 'health up again once the receiver answers', 5000);

  // 429 with Retry-After: 1 s: the next attempt waits for it, although the backoff is 10 ms and doubling.
  receiver.requests.length = 0;
  answering(receiver, (_req, n) => (n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 }));
  const limited = `rl-${randomUUID()}`;
  await detect(app, NG_IMAGE, 'press-1', 'c', limited);
  await waitFor(() => receiver.accepted('/hook').size === 1, 'the rate-limited delivery accepted', 10_000);
  const [first, second] = receiver.attempts('/hook', limited);
  assert.ok(second!.at - first!.at >= 950, `the retry came ${second!.at - first!.at} ms later, Retry-After said 1000`);
});

test('while the receiver is away (503) one probe at a time goes out, not an attempt per delivery; when it answers, the rest flow', {
  timeout: 60_000,
}, async (t) => {
  // Its own server: the 503s take 100 ms, so that attempts overlapping in time show.
  const arrivals: { key: string; busy: number; afterFailure: boolean }[] = [];
  const accepted = new Set<string>();
  let busy = 0;
  /** Set once the receiver has said 503 and then had nothing in flight: attempts sent before the sender saw a 503 are all answered. */
  let quiet = false;
  let away = true;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const key = String(req.headers['idempotency-key']);
      arrivals.push({ key, busy, afterFailure: quiet });
      busy++;
      setTimeout(() => {
        busy--;
        if (away && busy === 0) quiet = true;
        if (!away) accepted.add(key);
        res.writeHead(away ? 503 : 200).end();
      }, 100);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/away`;
  const app = await webhookApp({ webhook_urls: url, webhook_concurrency: 4, webhook_max_attempts: 1000, webhook_backoff_ms: 20, webhook_backoff_max_ms: 100 });
  t.after(() => app.close());
  const output = webhookOf(app);
  const ids = Array.from({ length: 10 }, (_, i) => `away-${i}-${randomUUID()}`);
  // Posted at once: the four first ones go out together, before any has failed.
  await Promise.all(ids.map((id) => detect(app, NG_IMAGE, 'line-a', 'c', id)));
  await waitFor(() => arrivals.filter((a) => a.afterFailure).length >= 8, 'eight attempts after the receiver said 503 and went quiet', 15_000);
  const probes = arrivals.filter((a) => a.afterFailure);
  assert.deepEqual(
    probes.map((a) => a.busy),
    probes.map(() => 0),
    'once it has said 503 (and the attempts already sent are answered), each attempt goes out alone, after the one before was answered',
  );
  assert.equal(output.health().connected, false);
  assert.match(output.health().detail, /HTTP 503/);

  away = false;
  await waitFor(() => ids.every((id) => accepted.has(id)), 'every delivery accepted once the receiver answers', 15_000);
  assert.ok(Math.max(...arrivals.map((a) => a.busy)) >= 1, 'deliveries run concurrently again once it answers (or did before it failed)');
  assert.deepEqual(await output.outbox.deadLetters(10), []);
  await waitFor(async () => (await metric(app, 'sightline_output_outbox_depth')) === 0, 'outbox empty', 5000);
});

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function detectTimes(app: FastifyInstance, n: number, tag: string): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await detect(app, i % 2 ? NG_IMAGE : OK_IMAGE, 'line-9', 'c', `${tag}-${i}-${randomUUID()}`);
    times.push(performance.now() - start);
  }
  return times;
}

test('a receiver that never answers does not slow /v1/detect; its attempts time out, health says so, and close() is bounded', {
  timeout: 60_000,
}, async (t) => {
  const receiver = await Receiver.start();
  t.after(() => receiver.close());
  answering(receiver, () => 'hang');
  const baseline = await startApp({});
  const baselineTimes = await detectTimes(baseline, 10, 'warm').then(() => detectTimes(baseline, 30, 'base'));
  await baseline.close();

  const app = await webhookApp({ webhook_urls: `${receiver.url}/slow`, webhook_timeout_ms: 500, webhook_concurrency: 2 });
  let closed = false;
  t.after(() => (closed ? undefined : app.close()));
  await detectTimes(app, 10, 'warm');
  const times = await detectTimes(app, 30, 'slow');
  const output = webhookOf(app);
  await waitFor(() => receiver.requests.length >= 2, 'the receiver holds the deliveries in flight', 5000);
  const base = median(baselineTimes);
  const withHook = median(times);
  process.stderr.write(`detect median: ${base.toFixed(1)} ms without the webhook output, ${withHook.toFixed(1)} ms with a receiver that never answers\n`);
  assert.ok(withHook < base * 2 + 50, `median ${withHook.toFixed(1)} ms with the hanging receiver vs ${base.toFixed(1)} ms without`);

  await waitFor(() => !output.health().connected, 'health turns down once the attempts time out', 5000);
  assert.match(output.health().detail, /\/slow: timed out/);
  assert.ok((await metric(app, 'sightline_output_failed_total')) >= 2);
  await waitFor(async () => (await metric(app, 'sightline_output_outbox_depth')) >= 30, 'the depth gauge shows the waiting deliveries', 5000);

  const start = performance.now();
  await app.close();
  closed = true;
  const closeMs = performance.now() - start;
  assert.ok(closeMs < 5000, `close took ${closeMs.toFixed(0)} ms with attempts hanging`);
});

test('examples/webhook_receiver.py accepts a signed Sightline delivery, rejects a tampered or stale one, and dedupes a repeat', {
  timeout: 60_000,
}, async (t) => {
  if (!requireOrSkip(t, existsSync(PYTHON), `${PYTHON} (Debian python3)`)) return;
  const child = spawn(PYTHON, [join(ROOT, 'examples/webhook_receiver.py'), '--host', '127.0.0.1', '--port', '0'], {
    env: { ...process.env, WEBHOOK_SECRET: SECRET, PYTHONUNBUFFERED: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(l));
  createInterface({ input: child.stderr }).on('line', (l) => lines.push(`stderr: ${l}`));
  t.after(() => child.kill());
  const listening = await waitFor(
    () => lines.map((l) => /^listening on (http:\/\/\S+)/.exec(l)?.[1]).find(Boolean),
    () => `the receiver listening\n${lines.join('\n')}`,
    10_000,
  );

  // The same deliveries also go to a recorder, so the test holds a real signed request to tamper with.
  const recorder = await Receiver.start();
  t.after(() => recorder.close());
  const app = await webhookApp({ webhook_urls: `${listening}/sightline,${recorder.url}/copy`, webhook_secret: SECRET });
  t.after(() => app.close());
  const id = `py-${randomUUID()}`;
  const res = await detect(app, NG_IMAGE, 'line-py', 'cam-1', id);
  await waitFor(
    () => lines.some((l) => l.startsWith(`accepted ${id} `)),
    () => `the Python receiver accepts ${id}\n${lines.join('\n')}`,
    10_000,
  );
  assert.match(
    lines.find((l) => l.startsWith(`accepted ${id} `))!,
    new RegExp(`line=line-py camera=cam-1 verdict=${res.verdict} defects=${res.detections.length}`),
  );
  await waitFor(() => recorder.requests.length === 1, 'the recorder has the delivery', 5000);
  const webhook = webhookOf(app);
  await waitFor(() => webhook.health().connected && /delivering/.test(webhook.health().detail), 'both receivers took it', 5000);
  const real = recorder.requests[0]!;
  const headers = Object.fromEntries(
    ['content-type', 'idempotency-key', 'x-sightline-delivery', 'x-sightline-attempt', 'x-sightline-timestamp', 'x-sightline-signature'].map((h) => [
      h,
      String(real.headers[h]),
    ]),
  );
  const send = (body: string, extra: Record<string, string> = {}) =>
    fetch(`${listening}/sightline`, { method: 'POST', headers: { ...headers, ...extra }, body }).then((r) => r.status);

  assert.equal(await send(real.body.replace('"verdict":"ng"', '"verdict":"ok"')), 401, 'a tampered body is rejected');
  assert.equal(await send(real.body, { 'x-sightline-signature': 'sha256=' + '0'.repeat(64) }), 401, 'a wrong signature is rejected');
  const stale = Math.floor(Date.now() / 1000) - 600;
  const staleSig = 'sha256=' + createHmac('sha256', SECRET).update(`${stale}.${real.body}`).digest('hex');
  assert.equal(
    await send(real.body, { 'x-sightline-timestamp': String(stale), 'x-sightline-signature': staleSig }),
    401,
    'a validly signed but stale one is rejected',
  );
  assert.equal(await send(real.body), 200, 'the genuine request again is answered 2xx (so the sender stops)…');
  await waitFor(
    () => lines.some((l) => l.startsWith(`duplicate ${id}`)),
    () => `…and logged as a duplicate\n${lines.join('\n')}`,
    5000,
  );
  assert.equal(lines.filter((l) => l.startsWith('accepted ')).length, 1, 'accepted once');
  assert.equal(lines.filter((l) => l.startsWith('rejected ')).length, 3, lines.join('\n'));
});
