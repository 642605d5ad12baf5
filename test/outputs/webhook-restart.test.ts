/**
 * Webhook deliveries are durable: real `sightline serve` processes on one data
 * directory (the outbox lives in its SQLite result store) lose no result when
 * the receiver is down across a graceful restart (webhook-crash.test.ts: a
 * process killed with attempts in flight).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { tempDir } from '../helpers/fixtures.js';
import { ROOT, SightlineProcess, cleanups, waitFor } from '../helpers/cli-process.js';

const SECRET = 'restart-secret';
const IMAGES = [readFileSync(join(ROOT, 'samples', 'ok-01.jpg')), readFileSync(join(ROOT, 'samples', 'ng-01.jpg'))];

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

/** A receiver on a fixed port that is started late (until then the port refuses connections). */
class Receiver {
  readonly requests: Received[] = [];
  #server: Server | undefined;

  constructor(readonly port: number) {}

  /** A free port now, nobody listening on it until start(). */
  static async reservePort(): Promise<number> {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    return port;
  }

  async start(): Promise<void> {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.requests.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => this.#server!.listen(this.port, '127.0.0.1', resolve));
  }

  /** Idempotency-Keys received: a receiver's dedupe. */
  accepted(): Set<string> {
    return new Set(this.requests.map((r) => String(r.headers['idempotency-key'])));
  }

  async close(): Promise<void> {
    if (!this.#server) return;
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server!.close(() => resolve()));
  }
}

function signatureValid(r: Received): boolean {
  const expected = Buffer.from('sha256=' + createHmac('sha256', SECRET).update(`${r.headers['x-sightline-timestamp']}.${r.body}`).digest('hex'));
  const got = Buffer.from(String(r.headers['x-sightline-signature'] ?? ''));
  return got.length === expected.length && timingSafeEqual(got, expected);
}

async function post(base: string, id: string, i: number): Promise<void> {
  const res = await fetch(`${base}/v1/detect?line=restart&camera=cam-${i % 3}`, {
    method: 'POST',
    headers: { 'content-type': 'image/jpeg', 'x-request-id': id },
    body: new Uint8Array(IMAGES[i % 2]!),
  });
  assert.equal(res.status, 200, await res.text());
}

async function metric(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = new RegExp(`^${name}\\{output="webhook"\\} ([\\d.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

async function waitUp(base: string): Promise<void> {
  await waitFor(
    async () =>
      (await fetch(`${base}/readyz`).then(
        (r) => r.status,
        () => 0,
      )) === 200,
    `${base} ready`,
    60_000,
  );
}

test('no result is lost: receiver down while results are posted, server SIGTERMed and restarted, receiver up: every result delivered once, signed', {
  timeout: 90_000,
}, async (t) => {
  const defer = cleanups(t);
  const tmp = tempDir('sightline-webhook-restart-');
  defer(tmp.cleanup);
  const receiver = new Receiver(await Receiver.reservePort());
  defer(() => receiver.close());
  const args = [
    'serve',
    ...['--host', '127.0.0.1', '--port', '0', '--data-dir', join(tmp.dir, 'data'), '--no-snapshots'],
    ...['--instances', '1', '--intra-op-threads', '1', '--log-level', 'info'],
    ...['--webhook-urls', `http://127.0.0.1:${receiver.port}/hook`, '--webhook-secret', SECRET],
    ...['--webhook-backoff-ms', '50', '--webhook-backoff-max-ms', '300', '--webhook-max-attempts', '1000'],
  ];
  const start = (name: string) => {
    const p = new SightlineProcess(name, args);
    defer(() => p.kill());
    return p;
  };
  const ids = Array.from({ length: 10 }, (_, i) => `restart-${i}-${randomUUID()}`);

  // 1. The receiver is down: six results wait in the outbox, each tried and failed.
  const first = start('first');
  const base1 = await first.baseUrl();
  await waitUp(base1);
  for (const [i, id] of ids.slice(0, 6).entries()) await post(base1, id, i);
  await waitFor(
    async () => (await metric(base1, 'sightline_output_failed_total')) >= 6,
    () => `failed attempts counted\n${first.tail()}`,
    15_000,
  );
  await waitFor(async () => (await metric(base1, 'sightline_output_outbox_depth')) === 6, 'six deliveries waiting', 5000);
  assert.ok(
    first.events.some((e) => e.event === 'webhook_failing'),
    'the failing receiver is logged',
  );

  // 2. A graceful restart on the same data directory, the receiver still down; four more results.
  first.child.kill('SIGTERM');
  await first.exited;
  assert.equal(first.exitStatus, 'code 0', first.tail());
  const second = start('second');
  const base2 = await second.baseUrl();
  await waitUp(base2);
  for (const [i, id] of ids.slice(6).entries()) await post(base2, id, i + 6);
  await waitFor(
    async () => (await metric(base2, 'sightline_output_outbox_depth')) === 10,
    () => `ten deliveries waiting after the restart\n${second.tail()}`,
    10_000,
  );

  // 3. The receiver comes up: every result arrives, signed.
  await receiver.start();
  await waitFor(
    () => ids.every((id) => receiver.accepted().has(id)),
    () => `all ten delivered (${receiver.accepted().size})\n${second.tail()}`,
    20_000,
  );
  assert.deepEqual(receiver.accepted(), new Set(ids), 'exactly the posted results');
  assert.equal(receiver.requests.length, 10, 'each once: a graceful restart sends nothing twice');
  for (const r of receiver.requests) assert.ok(signatureValid(r), `${r.headers['idempotency-key']} is signed`);
  for (const r of receiver.requests) assert.equal(JSON.parse(r.body).id, r.headers['idempotency-key']);
  const firstTries = receiver.requests.filter((r) => ids.slice(0, 6).includes(String(r.headers['idempotency-key'])));
  // While the receiver was away the deliveries waited behind probes; the probes' attempts were kept across the restart.
  assert.ok(
    firstTries.some((r) => Number(r.headers['x-sightline-attempt']) > 1),
    'attempts made before the restart are counted on (the outbox, not memory, keeps them)',
  );
  await waitFor(async () => (await metric(base2, 'sightline_output_outbox_depth')) === 0, 'the outbox empty', 5000);
  assert.equal(await metric(base2, 'sightline_output_sent_total'), 10);
  second.child.kill('SIGTERM');
  await second.exited;
});
