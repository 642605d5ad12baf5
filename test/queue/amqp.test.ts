import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { AmqpJobQueue, createJobQueue, deleteAmqpTopology, MemoryJobStateStore, type CreateJobQueueOptions } from '../../src/queue/index.js';
import { requireOrSkip } from '../helpers/requirements.js';
import { FAST, jobQueueContract, type TestQueue } from './job-queue.contract.js';
import { deferred, probeTcp, TcpProxy, waitFor } from './helpers.js';

const HOST = '127.0.0.1';
const PORT = 5672;
const URL = process.env.SIGHTLINE_TEST_AMQP_URL ?? `amqp://guest:guest@${HOST}:${PORT}`;
const REQUIREMENT = `RabbitMQ on ${HOST}:${PORT}`;
let probed: Promise<boolean> | undefined;
const available = () => (probed ??= probeTcp(HOST, PORT));

/** Unique names per test (BullMQ style), deleted afterwards. */
function uniquePrefix(): string {
  return `sightline-test-${randomUUID().slice(0, 8)}`;
}

jobQueueContract({
  name: 'amqp',
  requirement: REQUIREMENT,
  available,
  async create(shared) {
    const prefix = uniquePrefix();
    // Handles of one fixture play API and workers of one deployment: they share the state store.
    const stateStore = new MemoryJobStateStore();
    const handles: TestQueue[] = [];
    return {
      async open(extra: CreateJobQueueOptions = {}) {
        const q = createJobQueue(URL, { prefix, stateStore, reconnectBaseMs: 50, ...shared, ...extra }) as AmqpJobQueue;
        handles.push(q);
        return q;
      },
      async cleanup() {
        await Promise.all(handles.map((q) => q.close()));
        await deleteAmqpTopology(URL, prefix, shared);
      },
    };
  },
});

test('amqp: a dropped broker connection → QUEUE_UNAVAILABLE meanwhile, then it reconnects by itself and consumers resume', async (t) => {
  if (!requireOrSkip(t, await available(), REQUIREMENT)) return;
  const prefix = uniquePrefix();
  const proxy = await TcpProxy.start(HOST, PORT);
  const q = new AmqpJobQueue({ ...FAST, url: URL.replace(`${HOST}:${PORT}`, `${HOST}:${proxy.port}`), prefix, reconnectBaseMs: 30, reconnectMaxMs: 200 });
  t.after(async () => {
    await q.close();
    await proxy.close();
    await deleteAmqpTopology(URL, prefix, FAST);
  });
  const errors: Error[] = [];
  q.on('error', (err) => errors.push(err));
  await q.waitUntilReady();
  const done = new Set<string>();
  await q.consume(async (job) => {
    done.add(job.id);
  });
  const input = { line: 'line-1', image: Buffer.from([1, 2, 3]), contentType: 'image/jpeg' };
  const before = (await q.enqueue(input)).job_id;
  await waitFor(() => done.has(before), 'job before the drop');

  const lost = deferred();
  q.once('disconnected', () => lost.resolve());
  proxy.refuse = true;
  proxy.drop();
  await lost.promise;
  assert.equal(q.isAvailable(), false);
  await assert.rejects(q.enqueue(input), (err: { code?: string; statusCode?: number }) => err.code === 'QUEUE_UNAVAILABLE' && err.statusCode === 503);
  await new Promise((r) => setTimeout(r, 100)); // a few failed reconnect tries
  assert.equal(q.isAvailable(), false);

  const back = deferred();
  q.once('reconnected', () => back.resolve());
  proxy.refuse = false;
  await back.promise;
  assert.equal(q.isAvailable(), true);
  const after = (await q.enqueue(input)).job_id;
  await waitFor(() => done.has(after), 'job after the reconnect: the consumer resumed');
  assert.ok(errors.length > 0, 'the loss was reported as an error event');
});

test('amqp: waitUntilReady rejects with QUEUE_UNAVAILABLE when no broker answers', async () => {
  const q = new AmqpJobQueue({ url: 'amqp://guest:guest@127.0.0.1:1', prefix: uniquePrefix(), readyTimeoutMs: 100, reconnectBaseMs: 20 });
  try {
    await assert.rejects(q.waitUntilReady(), { code: 'QUEUE_UNAVAILABLE' });
    await assert.rejects(q.enqueue({ line: 'l', image: Buffer.from([1]), contentType: 'image/png' }), { code: 'QUEUE_UNAVAILABLE' });
  } finally {
    await q.close();
  }
});

test('amqp: an Idempotency-Key whose first publish was never confirmed is published again under the first id', async (t) => {
  if (!requireOrSkip(t, await available(), REQUIREMENT)) return;
  const prefix = uniquePrefix();
  const stateStore = new MemoryJobStateStore();
  const q = new AmqpJobQueue({ ...FAST, url: URL, prefix, stateStore });
  try {
    await q.waitUntilReady();
    // What an API that died between claiming the key and the broker's confirm leaves behind.
    const now = Date.now();
    await stateStore.insert({
      id: 'orphan-job',
      line: 'l1',
      priority: 'normal',
      state: 'pending',
      attempts: 0,
      idempotencyKey: 'cam-9-frame-1',
      deadline: null,
      lastError: null,
      deadReason: null,
      createdAt: now,
      updatedAt: now,
    });
    assert.equal((await q.getJob('orphan-job'))?.state, 'queued');
    const retry = await q.enqueue({ line: 'l1', image: Buffer.from('retried image'), contentType: 'image/jpeg', idempotencyKey: 'cam-9-frame-1' });
    assert.deepEqual(retry, { job_id: 'orphan-job', duplicate: true });
    assert.equal((await stateStore.get('orphan-job'))?.state, 'queued');
    const seen: { id: string; image: string }[] = [];
    const consumer = await q.consume(async (job) => void seen.push({ id: job.id, image: job.image.toString() }));
    await waitFor(() => seen.length > 0, 'the orphaned job to run', 10_000);
    await consumer.stop();
    assert.deepEqual(seen, [{ id: 'orphan-job', image: 'retried image' }]);
    // A key whose job was confirmed is not published again.
    const again = await q.enqueue({ line: 'l1', image: Buffer.from('third'), contentType: 'image/jpeg', idempotencyKey: 'cam-9-frame-1' });
    assert.deepEqual(again, { job_id: 'orphan-job', duplicate: true });
    assert.equal((await q.stats()).ready, 0);
  } finally {
    await q.close();
    await deleteAmqpTopology(URL, prefix, FAST);
  }
});

test('amqp: a job whose worker dies every time counts those attempts and ends in the dead letters', async (t) => {
  if (!requireOrSkip(t, await available(), REQUIREMENT)) return;
  const prefix = uniquePrefix();
  const stateStore = new MemoryJobStateStore();
  const options = { ...FAST, url: URL, prefix, stateStore, maxAttempts: 2 };
  const api = new AmqpJobQueue(options);
  const workers: AmqpJobQueue[] = [];
  try {
    await api.waitUntilReady();
    const { job_id } = await api.enqueue({ line: 'l1', image: Buffer.from('poison'), contentType: 'image/jpeg' });
    // Two workers in turn start the job and die without settling it.
    for (let i = 0; i < 2; i++) {
      const worker = new AmqpJobQueue(options);
      workers.push(worker);
      const started = deferred();
      await worker.consume(async () => {
        started.resolve();
        await new Promise(() => {}); // never finishes: the worker dies first
      });
      await started.promise;
      await worker.abort();
    }
    const ran: string[] = [];
    const last = new AmqpJobQueue(options);
    workers.push(last);
    await last.consume(async (job) => void ran.push(job.id));
    await waitFor(async () => (await api.getJob(job_id))?.state === 'dead', 'the job to be dead-lettered', 10_000);
    const dead = await api.getJob(job_id);
    assert.equal(dead?.attempts, 2);
    assert.match(dead?.lastError ?? '', /stopped without finishing/);
    assert.deepEqual(ran, [], 'a third run never happens');
  } finally {
    await Promise.all(workers.map((w) => w.close().catch(() => undefined)));
    await api.close();
    await deleteAmqpTopology(URL, prefix, FAST);
  }
});
