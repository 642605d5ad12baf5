import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { OutboxTables } from '../../src/outputs/outbox.js';
import { OutboxWriter } from '../../src/outputs/outbox-writer.js';
import { outputMetrics } from '../../src/outputs/metrics.js';
import { Registry } from 'prom-client';
import { requireOrSkip } from '../helpers/requirements.js';
import { POSTGRES_URL, POSTGRES_WHAT, postgresSchemas } from '../helpers/postgres-schemas.js';

const pgs = postgresSchemas('sightline_outbox');

/** One outbox contract, run against every back end the result store has. */
const BACKENDS: { name: string; open: (t: TestContext) => OutboxTables | undefined }[] = [
  {
    name: 'sqlite file',
    open: (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'sightline-outbox-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      return new OutboxTables(`sqlite:${join(dir, 'results.db')}`);
    },
  },
  {
    name: 'postgres',
    open: (t) => {
      if (!requireOrSkip(t, pgs.available, POSTGRES_WHAT)) return undefined;
      return new OutboxTables(POSTGRES_URL, { schema: pgs.schema() });
    },
  },
];

for (const backend of BACKENDS) {
  test(`outbox (${backend.name}): messages come out in order, the oldest are dropped beyond the bound, claims are exclusive`, async (t) => {
    const tables = backend.open(t);
    if (!tables) return;
    t.after(() => tables.close());
    const box = tables.outbox('mqtt', { max: 5, deadMax: 3 });
    const other = tables.outbox('webhook', { max: 5, deadMax: 3 });
    let dropped = 0;
    for (let i = 1; i <= 8; i++) dropped += await box.push(`k${i}`, JSON.stringify({ i }));
    await other.push('w1', '{}');
    assert.equal(dropped, 3, 'three beyond the bound of 5');
    assert.equal(await box.depth(), 5);
    assert.equal(await other.depth(), 1, 'outputs have their own outboxes');

    const first = await box.claim(2, 60_000);
    assert.deepEqual(
      first.map((e) => e.key),
      ['k4', 'k5'],
      'the oldest kept, in order',
    );
    // A second holder (another replica) gets the next ones, never the claimed ones.
    const second = await box.claim(10, 60_000);
    assert.deepEqual(
      second.map((e) => e.key),
      ['k6', 'k7', 'k8'],
    );
    assert.deepEqual(await box.claim(10, 60_000), [], 'everything is claimed');

    await box.done(first[0]!.seq);
    await box.release(first[1]!.seq);
    assert.deepEqual(
      (await box.claim(10, 60_000)).map((e) => e.key),
      ['k5'],
      'a released message comes back without counting an attempt',
    );
    assert.equal(await box.depth(), 4);
  });

  test(`outbox (${backend.name}): retries wait for their time, a crashed holder's claims come back, dead letters are kept bounded and replayed in order`, async (t) => {
    const tables = backend.open(t);
    if (!tables) return;
    t.after(() => tables.close());
    const box = tables.outbox('webhook', { max: 100, deadMax: 2 });
    const now = Date.now();
    for (let i = 1; i <= 4; i++) await box.push(`r${i}`, `{"n":${i}}`, now);
    const [a, b, c, d] = await box.claim(4, 1000, now);
    await box.retry(a!.seq, now + 5000, 'HTTP 500');
    assert.deepEqual(
      (await box.claim(10, 60_000, now + 1001)).map((e) => e.key),
      ['r2', 'r3', 'r4'],
      'the retried one waits; the others come back once their lease ended',
    );
    const again = await box.claim(10, 1000, now + 5000);
    assert.deepEqual(
      again.map((e) => [e.key, e.attempts, e.lastError]),
      [['r1', 1, 'HTTP 500']],
      'due again at its time, with the attempt counted',
    );
    for (const e of [a, b, c, d]) await box.kill(e!.seq, `gave up on ${e!.key}`, now + 6000 + e!.seq);
    const dead = await box.deadLetters(10);
    assert.deepEqual(
      dead.map((e) => e.key),
      ['r4', 'r3'],
      'dead letters newest first, only deadMax kept',
    );
    assert.equal(await box.deadLetterCount(), 2);
    assert.equal(await box.depth(), 0, 'dead letters are not waiting');
    assert.equal(await box.replay(dead[1]!.seq, now + 7000), 1);
    assert.equal(await box.replay(undefined, now + 7000), 1, 'then the rest');
    assert.equal(await box.replay(12345), 0, 'an unknown seq replays nothing');
    const replayed = await box.claim(10, 1000, now + 7000);
    assert.deepEqual(
      replayed.map((e) => [e.key, e.attempts]),
      [
        ['r3', 0],
        ['r4', 0],
      ],
      'back in their original order with fresh attempts',
    );
  });
}

test('outbox survives a reopen (the embedded shape keeps it on disk)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sightline-outbox-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const url = `sqlite:${join(dir, 'results.db')}`;
  const first = new OutboxTables(url);
  const box = first.outbox('mqtt', { max: 10, deadMax: 10 });
  await box.push('a', '1');
  await box.push('b', '2');
  await box.claim(1, 60_000); // held by a process that then dies
  await first.close();
  const second = new OutboxTables(url);
  t.after(() => second.close());
  const reopened = second.outbox('mqtt', { max: 10, deadMax: 10 });
  assert.equal(await reopened.depth(), 2);
  assert.deepEqual(
    (await reopened.claim(10, 1000, Date.now() + 61_000)).map((e) => e.key),
    ['a', 'b'],
  );
});

test('the outbox writer keeps publish order, never blocks the caller, and counts what it cannot keep', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sightline-outbox-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tables = new OutboxTables(`sqlite:${join(dir, 'results.db')}`);
  t.after(() => tables.close());
  const registry = new Registry();
  const metrics = outputMetrics(registry);
  const box = tables.outbox('mqtt', { max: 50, deadMax: 10 });
  const writer = new OutboxWriter(box, { metrics, logger: pino({ level: 'silent' }), max: 1000 });
  const started = performance.now();
  for (let i = 0; i < 80; i++) writer.push(`m${i}`, String(i));
  assert.ok(performance.now() - started < 50, 'push returns at once');
  await writer.flushed();
  const kept = await box.claim(100, 1000);
  assert.deepEqual(
    kept.map((e) => e.key),
    Array.from({ length: 50 }, (_, i) => `m${i + 30}`),
  );
  const dropped = await metrics.dropped.get();
  assert.equal(dropped.values.find((v) => v.labels.reason === 'outbox_full')?.value, 30);

  // The database gone: the message is dropped and counted, the writer goes on.
  await tables.close();
  writer.push('late', 'x');
  await writer.flushed();
  const after = await metrics.dropped.get();
  assert.equal(after.values.find((v) => v.labels.reason === 'outbox_unavailable')?.value, 1);
});
