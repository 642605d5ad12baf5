import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import { UnrecoverableJobError, type CreateJobQueueOptions, type Job, type JobQueue } from '../../src/queue/index.js';
import { requireOrSkip } from '../helpers/requirements.js';
import { deferred, untilAborted, waitFor } from './helpers.js';

/** A queue handle that can also die like a crashed process (no acks, no lease release). */
export type TestQueue = JobQueue & { abort(): Promise<void> };

export interface QueueFixture {
  /** Another handle on the same queue (as another process would open it); closed by cleanup. */
  open(extra?: CreateJobQueueOptions): Promise<TestQueue>;
  /** Closes every handle and deletes the queue (file, or exchanges and queues). */
  cleanup(): Promise<void>;
}

export interface QueueHarness {
  name: string;
  /** What must be running for these tests, for the skip message. */
  requirement: string;
  available(): Promise<boolean>;
  /** A fresh queue of its own; `options` are shared by every handle `open()` returns. */
  create(options: CreateJobQueueOptions): Promise<QueueFixture>;
}

/** Short timings so that the suite runs in seconds. */
export const FAST: CreateJobQueueOptions = { backoffBaseMs: 20, backoffMaxMs: 200, maxAttempts: 3, closeGraceMs: 2000 };

const image = (n = 64 * 1024) => randomBytes(n);
const input = (extra: Partial<Parameters<JobQueue['enqueue']>[0]> = {}) => ({ line: 'line-1', image: image(32), contentType: 'image/jpeg', ...extra });

/** The suite every JobQueue back end must pass (tus-node-server's store contract, for queues). */
export function jobQueueContract(h: QueueHarness): void {
  /** Opens a fresh queue, or skips the test when the back end's service is missing. */
  async function setup(t: TestContext, options: CreateJobQueueOptions = {}): Promise<{ q: TestQueue; fx: QueueFixture } | undefined> {
    if (!requireOrSkip(t, await h.available(), h.requirement)) return undefined;
    const fx = await h.create({ ...FAST, ...options });
    t.after(() => fx.cleanup());
    const q = await fx.open();
    await q.waitUntilReady();
    return { q, fx };
  }

  describe(`JobQueue contract: ${h.name}`, () => {
    test('enqueue → consume → ack: the image bytes and fields arrive intact, the job ends done', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const bytes = image();
      const { job_id, duplicate } = await s.q.enqueue({
        line: 'line-3',
        priority: 'high',
        image: bytes,
        contentType: 'image/png',
        options: { model: 'defects:1', conf: 0.4, iou: 0.5 },
        ttlMs: 60_000,
      });
      assert.equal(duplicate, false);
      assert.equal((await s.q.getJob(job_id))?.state, 'queued', 'durable and visible once enqueue resolved');
      const got = deferred<Job>();
      await s.q.consume(async (job) => got.resolve(job));
      const job = await got.promise;
      assert.equal(job.id, job_id);
      assert.ok(job.image.equals(bytes), 'image bytes intact');
      assert.equal(job.line, 'line-3');
      assert.equal(job.priority, 'high');
      assert.equal(job.contentType, 'image/png');
      assert.deepEqual(job.options, { model: 'defects:1', conf: 0.4, iou: 0.5 });
      assert.equal(job.attempt, 1);
      assert.ok(job.deadline !== null && job.deadline > Date.now());
      const info = await waitFor(async () => {
        const i = await s.q.getJob(job_id);
        return i?.state === 'done' && i;
      }, 'state done');
      assert.equal(info.attempts, 1);
      assert.equal(info.line, 'line-3');
      assert.equal(await s.q.depth(), 0);
      assert.equal(await s.q.getJob('no-such-job'), undefined);
    });

    test('a repeated idempotency key returns the first job and queues nothing more', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const first = await s.q.enqueue(input({ idempotencyKey: 'cam-7/frame-1' }));
      const again = await s.q.enqueue(input({ idempotencyKey: 'cam-7/frame-1' }));
      const other = await s.q.enqueue(input({ idempotencyKey: 'cam-7/frame-2' }));
      assert.deepEqual(again, { job_id: first.job_id, duplicate: true });
      assert.equal(other.duplicate, false);
      assert.notEqual(other.job_id, first.job_id);
      assert.equal(await s.q.depth(), 2);
      assert.equal((await s.q.getJob(first.job_id))?.idempotencyKey, 'cam-7/frame-1');
    });

    test('high priority jobs run before low ones waiting with them; FIFO within a priority', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const ids: Record<string, string> = {};
      for (const [name, priority] of [
        ['low1', 'low'],
        ['normal', 'normal'],
        ['low2', 'low'],
        ['high', 'high'],
      ] as const) {
        ids[(await s.q.enqueue(input({ priority }))).job_id] = name;
      }
      const order: string[] = [];
      await s.q.consume(async (job) => {
        order.push(ids[job.id]!);
      });
      await waitFor(() => order.length === 4, 'four jobs');
      assert.deepEqual(order, ['high', 'normal', 'low1', 'low2']);
    });

    test('a consumer runs up to `concurrency` jobs at once and takes no more', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const release = deferred();
      let running = 0;
      let peak = 0;
      const done = new Set<string>();
      s.q.on('completed', (id) => done.add(id));
      const consumer = await s.q.consume(
        async () => {
          peak = Math.max(peak, ++running);
          await release.promise;
          running--;
        },
        { concurrency: 2 },
      );
      for (let i = 0; i < 3; i++) await s.q.enqueue(input());
      await waitFor(() => consumer.inHand === 2, 'two jobs in hand');
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(consumer.inHand, 2, 'no third job taken while two run');
      assert.equal((await s.q.stats()).inFlight, 2);
      release.resolve();
      await waitFor(() => done.size === 3, 'all three done');
      assert.equal(peak, 2);
    });

    test('a failing handler is retried with backoff, then dead-lettered with its last error', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const runs: { attempt: number; at: number }[] = [];
      const retrying: number[] = [];
      s.q.on('retrying', (_id, attempt) => retrying.push(attempt));
      const dead = deferred<[string, string, string | null]>();
      s.q.on('dead', (id, reason, message) => dead.resolve([id, reason, message]));
      const { job_id } = await s.q.enqueue(input());
      await s.q.consume(async (job) => {
        runs.push({ attempt: job.attempt, at: Date.now() });
        throw new Error(`boom ${job.attempt}`);
      });
      assert.deepEqual(await dead.promise, [job_id, 'failed', 'boom 3']);
      assert.deepEqual(
        runs.map((r) => r.attempt),
        [1, 2, 3],
      );
      assert.deepEqual(retrying, [1, 2]);
      // Backoff 20 ms then 40 ms (lower bounds only: tests never assert how fast).
      assert.ok(runs[1]!.at - runs[0]!.at >= 15, `first retry after ${runs[1]!.at - runs[0]!.at} ms`);
      assert.ok(runs[2]!.at - runs[1]!.at >= 30, `second retry after ${runs[2]!.at - runs[1]!.at} ms`);
      const info = await waitFor(async () => {
        const i = await s.q.getJob(job_id);
        return i?.state === 'dead' && i;
      }, 'state dead');
      assert.equal(info.deadReason, 'failed');
      assert.equal(info.lastError, 'boom 3');
      const [d] = await s.q.listDead();
      assert.equal(d?.id, job_id);
      assert.equal(d?.reason, 'failed');
      assert.equal(d?.lastError, 'boom 3');
      assert.equal(d?.attempts, 3);
      assert.equal(d?.line, 'line-1');
      const stats = await s.q.stats();
      assert.deepEqual(stats, { ready: 0, delayed: 0, inFlight: 0, dead: 1 });
    });

    test('a job that fails once and then succeeds ends done after two attempts', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const { job_id } = await s.q.enqueue(input());
      await s.q.consume(async (job) => {
        if (job.attempt === 1) throw new Error('transient');
      });
      const info = await waitFor(async () => {
        const i = await s.q.getJob(job_id);
        return i?.state === 'done' && i;
      }, 'state done');
      assert.equal(info.attempts, 2);
    });

    test('listDead, retryDead and purgeDead', async (t) => {
      const s = await setup(t);
      if (!s) return;
      let healthy = false;
      const done = new Set<string>();
      s.q.on('completed', (id) => done.add(id));
      const deadIds: string[] = [];
      s.q.on('dead', (id) => deadIds.push(id));
      await s.q.consume(async () => {
        // Unrecoverable: dead at once, whatever maxAttempts says.
        if (!healthy) throw new UnrecoverableJobError('corrupt image');
      });
      const a = (await s.q.enqueue(input())).job_id;
      const b = (await s.q.enqueue(input())).job_id;
      await waitFor(() => deadIds.length === 2, 'two dead jobs');
      const page = await s.q.listDead({ limit: 1 });
      assert.equal(page.length, 1);
      const all = await s.q.listDead();
      assert.deepEqual(new Set(all.map((d) => d.id)), new Set([a, b]), 'listing does not consume');
      assert.ok(all.every((d) => d.reason === 'failed' && d.lastError === 'corrupt image' && d.attempts === 1));

      healthy = true;
      assert.equal(await s.q.retryDead(a), true);
      assert.equal(await s.q.retryDead('no-such-job'), false);
      await waitFor(() => done.has(a), 'retried job done');
      const info = await s.q.getJob(a);
      assert.equal(info?.state, 'done');
      assert.equal(info?.attempts, 1, 'attempts start over');
      assert.deepEqual(
        (await s.q.listDead()).map((d) => d.id),
        [b],
      );
      assert.equal(await s.q.retryDead(a), false, 'no longer dead');

      assert.equal(await s.q.purgeDead(), 1);
      assert.deepEqual(await s.q.listDead(), []);
      assert.equal((await s.q.stats()).dead, 0);
    });

    test('a job whose TTL ran out before a worker took it is not run: dead, reason expired', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const expiring = (await s.q.enqueue(input({ ttlMs: 30 }))).job_id;
      const pastDeadline = (await s.q.enqueue(input({ deadline: Date.now() - 1 }))).job_id;
      const fresh = (await s.q.enqueue(input())).job_id;
      await new Promise((r) => setTimeout(r, 80));
      const ran: string[] = [];
      await s.q.consume(async (job) => {
        ran.push(job.id);
      });
      await waitFor(async () => (await s.q.getJob(fresh))?.state === 'done', 'fresh job done');
      assert.deepEqual(ran, [fresh]);
      for (const id of [expiring, pastDeadline]) {
        const info = await s.q.getJob(id);
        assert.equal(info?.state, 'dead');
        assert.equal(info?.deadReason, 'expired');
      }
      const dead = await waitFor(async () => {
        const list = await s.q.listDead();
        return list.length === 2 && list;
      }, 'two expired jobs in the dead letters');
      assert.deepEqual(new Set(dead.map((d) => d.id)), new Set([expiring, pastDeadline]));
      assert.ok(dead.every((d) => d.reason === 'expired'));
    });

    test('a full queue refuses with QUEUE_FULL (a known idempotency key still answers)', async (t) => {
      const s = await setup(t, { maxLength: 2 });
      if (!s) return;
      const first = await s.q.enqueue(input({ idempotencyKey: 'k1' }));
      await s.q.enqueue(input());
      await assert.rejects(s.q.enqueue(input()), (err: { code?: string; statusCode?: number }) => err.code === 'QUEUE_FULL' && err.statusCode === 503);
      assert.deepEqual(await s.q.enqueue(input({ idempotencyKey: 'k1' })), { job_id: first.job_id, duplicate: true });
      assert.equal(await s.q.depth(), 2);
      // The refused job left no trace: its idempotency key is free for the client's retry.
      await assert.rejects(s.q.enqueue(input({ idempotencyKey: 'k3' })), { code: 'QUEUE_FULL' });
      const done = new Set<string>();
      s.q.on('completed', (id) => done.add(id));
      await s.q.consume(async () => {});
      await waitFor(() => done.size === 2, 'queue drained');
      assert.equal((await s.q.enqueue(input({ idempotencyKey: 'k3' }))).duplicate, false);
    });

    test('stop() waits for the job in hand to finish by default', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const release = deferred();
      const started = deferred();
      const consumer = await s.q.consume(async () => {
        started.resolve();
        await release.promise;
      });
      const { job_id } = await s.q.enqueue(input());
      await started.promise;
      assert.equal(consumer.inHand, 1);
      let stopped = false;
      const stopping = consumer.stop().then(() => (stopped = true));
      await new Promise((r) => setTimeout(r, 30));
      assert.equal(stopped, false, 'stop() returned with a job still running');
      release.resolve();
      await stopping;
      await waitFor(async () => (await s.q.getJob(job_id))?.state === 'done', 'job done');
    });

    test('stop() past its grace gives the job back and another consumer runs it: no job lost', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const heldBy = deferred<AbortSignal>();
      const a = await s.q.consume(async (_job, signal) => {
        heldBy.resolve(signal);
        await untilAborted(signal);
        throw new Error('aborted'); // must not count: the job was given back
      });
      const { job_id } = await s.q.enqueue(input());
      const signal = await heldBy.promise;
      await a.stop({ graceMs: 20 });
      assert.equal(signal.aborted, true);
      const got = deferred<Job>();
      await s.q.consume(async (job) => got.resolve(job));
      const job = await got.promise;
      assert.equal(job.id, job_id);
      assert.equal(job.attempt, 1, 'a job given back keeps its attempt');
      await waitFor(async () => (await s.q.getJob(job_id))?.state === 'done', 'job done');
      await a.stop(); // idempotent
    });

    test('a worker that dies without acking: its job is delivered again to another', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const doomed = await s.fx.open({ visibilityTimeoutMs: 150 });
      const taken = deferred();
      await doomed.consume(async (_job, signal) => {
        taken.resolve();
        await untilAborted(signal);
      });
      const { job_id } = await s.q.enqueue(input());
      await taken.promise;
      await doomed.abort(); // no ack, no release: as if the process had been killed
      const got = deferred<Job>();
      await s.q.consume(async (job) => got.resolve(job));
      assert.equal((await got.promise).id, job_id);
      await waitFor(async () => (await s.q.getJob(job_id))?.state === 'done', 'job done');
    });

    test('invalid input is refused with INVALID_JOB', async (t) => {
      const s = await setup(t);
      if (!s) return;
      await assert.rejects(s.q.enqueue(input({ line: 'a*b' })), { code: 'INVALID_JOB' });
      await assert.rejects(s.q.enqueue(input({ image: Buffer.alloc(0) })), { code: 'INVALID_JOB' });
      await assert.rejects(s.q.enqueue(input({ priority: 'urgent' as 'high' })), { code: 'INVALID_JOB' });
      assert.equal(await s.q.depth(), 0);
    });

    test('close() is idempotent, emits close once, and later calls throw QUEUE_CLOSED', async (t) => {
      const s = await setup(t);
      if (!s) return;
      let closes = 0;
      s.q.on('close', () => closes++);
      await s.q.consume(async () => {});
      await Promise.all([s.q.close(), s.q.close()]);
      await s.q.close();
      assert.equal(closes, 1);
      assert.equal(s.q.isAvailable(), false);
      await assert.rejects(s.q.enqueue(input()), { code: 'QUEUE_CLOSED' });
    });
  });
}
