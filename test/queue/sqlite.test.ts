import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { createJobQueue, SqliteJobQueue, type CreateJobQueueOptions } from '../../src/queue/index.js';
import { jobQueueContract, type TestQueue } from './job-queue.contract.js';
import { deferred, untilAborted, waitFor } from './helpers.js';

jobQueueContract({
  name: 'sqlite',
  requirement: 'nothing',
  available: async () => true,
  async create(shared) {
    const dir = mkdtempSync(join(tmpdir(), 'sightline-queue-'));
    const handles: TestQueue[] = [];
    return {
      async open(extra: CreateJobQueueOptions = {}) {
        const q = createJobQueue(`sqlite:${join(dir, 'queue.sqlite')}`, { pollIntervalMs: 20, sweepIntervalMs: 20, ...shared, ...extra }) as SqliteJobQueue;
        handles.push(q);
        return q;
      },
      async cleanup() {
        await Promise.all(handles.map((q) => q.close()));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
});

test('createJobQueue: sqlite:PATH is relative to the cwd and creates its directory; sqlite::memory: works', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sightline-queue-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'nested', 'deeper', 'queue.sqlite');
  const q = createJobQueue(`sqlite:${relative(process.cwd(), file)}`);
  t.after(() => q.close());
  assert.equal(q.kind, 'sqlite');
  await q.waitUntilReady();
  await q.enqueue({ line: 'l', image: Buffer.from([1]), contentType: 'image/png' });
  assert.ok(existsSync(file));

  const mem = createJobQueue('sqlite::memory:');
  t.after(() => mem.close());
  const { job_id } = await mem.enqueue({ line: 'l', image: Buffer.from([1]), contentType: 'image/png' });
  assert.equal((await mem.getJob(job_id))?.state, 'queued');

  assert.throws(
    () => createJobQueue('redis://x:secret@host'),
    (err: Error) => /Unsupported queue URL redis:\/\/x:\*\*\*@host/.test(err.message),
  );
  assert.equal(createJobQueue('amqp://127.0.0.1:1').kind, 'amqp', 'amqp URLs open lazily, without connecting');
});

test('sqlite: a long job keeps its lease by renewing it (not redelivered while its worker lives)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sightline-queue-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'q.sqlite');
  const a = new SqliteJobQueue({ path, visibilityTimeoutMs: 60, pollIntervalMs: 10, sweepIntervalMs: 10 });
  const b = new SqliteJobQueue({ path, visibilityTimeoutMs: 60, pollIntervalMs: 10, sweepIntervalMs: 10 });
  t.after(() => Promise.all([a.close(), b.close()]));
  const runs: string[] = [];
  const release = deferred();
  await a.consume(async () => {
    runs.push('a');
    await release.promise;
  });
  await b.consume(async () => {
    runs.push('b');
  });
  const { job_id } = await a.enqueue({ line: 'l', image: Buffer.from([1]), contentType: 'image/png' });
  await waitFor(() => runs.length === 1, 'first run');
  await new Promise((r) => setTimeout(r, 250)); // four visibility timeouts
  release.resolve();
  await waitFor(async () => (await a.getJob(job_id))?.state === 'done', 'done');
  assert.deepEqual(runs, ['a']);
});

test('sqlite: a worker that keeps dying on a job uses up its attempts (poison job ends dead)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sightline-queue-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'q.sqlite');
  const opts = { path, maxAttempts: 2, visibilityTimeoutMs: 50, pollIntervalMs: 10, sweepIntervalMs: 10 };
  const main = new SqliteJobQueue(opts);
  t.after(() => main.close());
  const { job_id } = await main.enqueue({ line: 'l', image: Buffer.from([1]), contentType: 'image/png' });
  for (let i = 0; i < 2; i++) {
    const doomed = new SqliteJobQueue(opts);
    const taken = deferred();
    await doomed.consume(async (_job, signal) => {
      taken.resolve();
      await untilAborted(signal);
    });
    await taken.promise;
    await doomed.abort();
  }
  const info = await waitFor(async () => {
    const i = await main.getJob(job_id);
    return (await main.stats()) && i?.state === 'dead' && i;
  }, 'dead after two lost leases');
  assert.equal(info.deadReason, 'failed');
  assert.match(info.lastError ?? '', /lease/);
});
