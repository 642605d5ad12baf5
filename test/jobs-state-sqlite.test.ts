import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import BetterSqlite3 from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import { deleteAmqpTopology } from '../src/queue/index.js';
import { solidImage, startApp, tempDir, writeDecoderModels } from './helpers/fixtures.js';
import { AMQP_URL } from './helpers/cli-process.js';
import { requireOrSkip } from './helpers/requirements.js';
import { probeTcp, waitFor } from './queue/helpers.js';

// With a RabbitMQ queue and a SQLite result store, job states live in job-states.db
// beside results.db, opened like every Sightline database (src/store/open-database.ts).

async function withApp(t: TestContext, worker: boolean, run: (app: FastifyInstance, dataDir: string) => Promise<void>): Promise<void> {
  const amqp = new URL(AMQP_URL);
  if (!requireOrSkip(t, await probeTcp(amqp.hostname, Number(amqp.port || 5672)), `RabbitMQ at ${amqp.host}`)) return;
  const tmp = tempDir();
  writeDecoderModels(tmp.dir);
  const dataDir = join(tmp.dir, 'data');
  const prefix = `jobstate-${randomUUID().slice(0, 8)}`;
  const app = await startApp({
    models_dir: tmp.dir,
    default_model: 'v8',
    store_url: `sqlite:${join(dataDir, 'results.db')}`,
    queue_url: AMQP_URL,
    queue_prefix: prefix,
    events_url: 'memory:',
    worker,
  });
  try {
    await run(app, dataDir);
  } finally {
    await app.close();
    await deleteAmqpTopology(AMQP_URL, prefix);
    tmp.cleanup();
  }
}

async function enqueue(app: FastifyInstance): Promise<string> {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/jobs?line=states',
    headers: { 'content-type': 'image/png' },
    payload: await solidImage(64, 64, 'png'),
  });
  assert.equal(res.statusCode, 202, res.body);
  return (res.json() as { job_id: string }).job_id;
}

test('a job on RabbitMQ with a SQLite store is tracked in job-states.db until done', async (t) => {
  await withApp(t, true, async (app, dataDir) => {
    const id = await enqueue(app);
    await waitFor(async () => (await app.inject({ method: 'GET', url: `/v1/jobs/${id}` })).json().state === 'done', 'the job to be done', 20_000);
    assert.ok(existsSync(join(dataDir, 'job-states.db')));
    assert.equal((await app.inject({ method: 'GET', url: `/v1/results/${id}` })).statusCode, 200);
  });
});

test('job states wait for another connection holding job-states.db without blocking the event loop', async (t) => {
  await withApp(t, false, async (app, dataDir) => {
    await enqueue(app); // creates job-states.db and its table
    // Another process's writer, played here by a second connection of this one: it can let
    // go only while the event loop runs, which a synchronous SQLite busy wait would stop.
    const holder = new BetterSqlite3(join(dataDir, 'job-states.db'));
    holder.exec('BEGIN IMMEDIATE');
    const heldMs = 300;
    const release = setTimeout(() => holder.exec('COMMIT'), heldMs);
    try {
      const started = performance.now();
      const id = await enqueue(app);
      assert.ok(performance.now() - started >= heldMs * 0.9, 'the insert waited for the lock');
      assert.equal((await app.inject({ method: 'GET', url: `/v1/jobs/${id}` })).json().state, 'queued');
    } finally {
      clearTimeout(release);
      if (holder.inTransaction) holder.exec('COMMIT');
      holder.close();
    }
  });
});
