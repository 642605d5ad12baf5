/**
 * Crash tests of the async jobs, on real `sightline` processes killed with SIGKILL:
 * every job that got its 202 ends with exactly one stored result, whether a
 * worker dies mid-run (RabbitMQ + PostgreSQL, redelivery) or the embedded
 * server dies and restarts on its data directory (SQLite, lease expiry).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { buildConstantModel, writeModel } from './helpers/onnx-builder.js';
import { LABELS, RAW_BOXES, manifest, solidImage, tempDir, yolov8Output } from './helpers/fixtures.js';
import { requireOrSkip } from './helpers/requirements.js';
import { probeTcp } from './queue/helpers.js';
import { AMQP_URL, PG_URL, SightlineProcess, cleanups, freshDatabase, isolateBroker, waitFor } from './helpers/cli-process.js';

const JOBS = 500;
const SUBMIT_CONCURRENCY = 16;
/** Input size of the test model: its `slow` convolutions take ~20 ms per image on one thread. */
const MODEL_INPUT = 64;
/** Every process: one single-threaded model instance, 4 jobs in hand, so a kill always finds jobs in flight. */
const RUNTIME_ARGS = ['--intra-op-threads', '1', '--instances', '1', '--worker-concurrency', '4', '--log-level', 'info'];
/**
 * `queue_url` has no setting for the amqp prefix, so these processes use the
 * default `sightline.*` exchanges and queues. The retry options name its delay
 * queues: the defaults (3 attempts, 1000 ms backoff) are what the processes run with.
 */

/** Starts `sightline` processes that are killed at cleanup; their logs go to stderr when the test fails. */
function processes(defer: (fn: () => unknown) => void): { start(name: string, args: string[]): SightlineProcess; dump(): void } {
  const all: SightlineProcess[] = [];
  return {
    start(name, args) {
      const p = new SightlineProcess(name, args);
      all.push(p);
      defer(() => p.kill());
      return p;
    },
    dump() {
      for (const p of all) process.stderr.write(`${p.tail()}\n`);
    },
  };
}

/** Runs `body`; on failure the processes' last log lines go to stderr before the error. */
async function withLogs(procs: { dump(): void }, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    procs.dump();
    throw err;
  }
}

function writeTestModel(repo: string): void {
  writeModel(
    repo,
    'crash',
    '1',
    buildConstantModel({
      output: yolov8Output(),
      outputShape: [4 + LABELS.length, RAW_BOXES.length + 1],
      inputWidth: MODEL_INPUT,
      inputHeight: MODEL_INPUT,
      slow: true,
    }),
    manifest({ format: 'yolov8', input: { width: MODEL_INPUT, height: MODEL_INPUT } }),
  );
}

async function waitReady(base: string, proc: SightlineProcess, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    async () => {
      if (!proc.alive) throw new Error(`${proc.name} exited (${proc.exitStatus})\n${proc.tail()}`);
      const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
      await res?.arrayBuffer();
      return res?.status === 200;
    },
    () => `${proc.name} /readyz\n${proc.tail()}`,
    timeoutMs,
  );
}

/** POSTs `count` jobs, `concurrency` at a time; returns the job ids of the 202s and a line per other outcome. */
async function submitJobs(base: string, image: Buffer, count: number, concurrency: number): Promise<{ ids: string[]; failures: string[] }> {
  const ids: string[] = [];
  const failures: string[] = [];
  let next = 0;
  const body = new Uint8Array(image);
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        try {
          const res = await fetch(`${base}/v1/jobs?line=crash-${i % 4}`, {
            method: 'POST',
            headers: { 'content-type': 'image/jpeg' },
            body,
            signal: AbortSignal.timeout(30_000),
          });
          const json = (await res.json()) as { job_id?: string };
          if (res.status === 202 && json.job_id) ids.push(json.job_id);
          else failures.push(`#${i}: ${res.status} ${JSON.stringify(json)}`);
        } catch (err) {
          failures.push(`#${i}: ${(err as Error).message}`);
        }
      }
    }),
  );
  return { ids, failures };
}

/** GET /v1/jobs/:id for every id; returns the ids that are not `done` with their own stored result. */
async function notDone(base: string, ids: string[]): Promise<string[]> {
  const bad: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < ids.length) {
        const id = ids[next++]!;
        const res = await fetch(`${base}/v1/jobs/${id}`, { signal: AbortSignal.timeout(10_000) });
        const job = (await res.json()) as { state?: string; result?: { request_id?: string } };
        if (res.status !== 200 || job.state !== 'done' || job.result?.request_id !== id) bad.push(`${id}: ${res.status} ${JSON.stringify(job).slice(0, 200)}`);
      }
    }),
  );
  return bad;
}

/** Asserts that `rows` (request_id, n) name exactly the submitted ids, each once. */
function assertExactlyOnce(rows: { request_id: string; n: number }[], ids: string[]): void {
  const twice = rows.filter((r) => Number(r.n) !== 1);
  assert.deepEqual(twice, [], 'a result stored more than once');
  const stored = new Set(rows.map((r) => r.request_id));
  const missing = ids.filter((id) => !stored.has(id));
  assert.deepEqual(missing, [], 'a job with a 202 has no stored result');
  assert.equal(rows.length, ids.length, 'results that no submitted job explains');
}

test(`distributed (RabbitMQ + PostgreSQL): one of two workers is SIGKILLed mid-run; all ${JOBS} jobs end with exactly one result`, {
  timeout: 300_000,
}, async (t) => {
  const amqp = new URL(AMQP_URL);
  const pgUrl = new URL(PG_URL);
  if (!requireOrSkip(t, await probeTcp(amqp.hostname, Number(amqp.port || 5672)), `RabbitMQ at ${amqp.host}`)) return;
  if (!requireOrSkip(t, await probeTcp(pgUrl.hostname, Number(pgUrl.port || 5432)), `PostgreSQL at ${pgUrl.host}`)) return;
  const started = Date.now();
  const defer = cleanups(t);

  // Isolation: a database of its own; the broker's default-prefix topology, locked, emptied before and after.
  await isolateBroker(defer);
  const { url: dbHref, pool: db } = await freshDatabase(defer, 'sightline_crash');
  const tmp = tempDir('sightline-crash-');
  defer(tmp.cleanup);
  writeTestModel(tmp.dir);
  const procs = processes(defer);

  await withLogs(procs, async () => {
    const shared = ['--queue-url', AMQP_URL, '--store-url', dbHref, '--models-dir', tmp.dir, '--data-dir', join(tmp.dir, 'data'), ...RUNTIME_ARGS];
    // The API first: it creates job_states before the workers start (processes that create it together race).
    const api = procs.start('api', ['serve', '--no-worker', '--host', '127.0.0.1', '--port', '0', ...shared]);
    const base = await api.baseUrl();
    await waitReady(base, api);
    const victim = procs.start('worker-a', ['worker', ...shared]);
    const survivor = procs.start('worker-b', ['worker', ...shared]);
    await Promise.all([victim, survivor].map((w) => w.waitEvent('worker_started', (e) => e.event === 'worker_started', 60_000)));

    const results = async () => {
      try {
        return (await db.query<{ n: number }>('select count(*)::int as n from results')).rows[0]!.n;
      } catch (err) {
        if ((err as { code?: string }).code === '42P01') return 0; // not migrated yet
        throw err;
      }
    };
    const image = await solidImage(MODEL_INPUT * 2, MODEL_INPUT * 2, 'jpeg');
    const submitting = submitJobs(base, image, JOBS, SUBMIT_CONCURRENCY);

    const doneAtKill = await waitFor(
      async () => {
        const n = await results();
        return n >= 50 ? n : 0;
      },
      '50 stored results',
      120_000,
    );
    victim.child.kill('SIGKILL');
    await victim.exited;
    assert.equal(victim.exitStatus, 'SIGKILL');
    const victimDone = victim.jobsDone().size;
    t.diagnostic(`worker-a SIGKILLed at ${doneAtKill} stored results, having finished ${victimDone} jobs itself`);
    assert.ok(doneAtKill < JOBS - 20, `the kill came too late to be mid-run (${doneAtKill} of ${JOBS} done)`);
    assert.ok(victimDone > 0, 'the killed worker had taken part');

    const { ids, failures } = await submitting;
    assert.deepEqual(failures, [], 'every POST /v1/jobs answers 202');
    assert.equal(new Set(ids).size, JOBS, 'job ids are unique');

    let stored = 0;
    await waitFor(
      async () => (stored = await results()) >= JOBS,
      () => `${JOBS} stored results (have ${stored})`,
      180_000,
    );
    const states = async () =>
      (await db.query<{ state: string; n: number }>('select state, count(*)::int as n from job_states group by state order by state')).rows;
    await waitFor(async () => (await states()).find((s) => s.state === 'done')?.n === JOBS, 'every job state done', 30_000);

    const { rows } = await db.query<{ request_id: string; n: number }>('select request_id, count(*)::int as n from results group by request_id');
    assertExactlyOnce(rows, ids);
    assert.deepEqual(await states(), [{ state: 'done', n: JOBS }]);
    assert.deepEqual(await notDone(base, ids), [], 'GET /v1/jobs/:id says done, with the result');

    // Between them the two workers ran every job; the survivor took over after the kill.
    const byVictim = victim.jobsDone();
    const bySurvivor = survivor.jobsDone();
    // pino writes stdout asynchronously: a SIGKILL can cut the victim's last lines, so a
    // job it finished and acked just before the kill may have no job_done line. At most
    // what it held at once (--worker-concurrency 4); each is stored exactly once (above).
    const unlogged = ids.filter((id) => !bySurvivor.has(id) && !byVictim.has(id));
    assert.ok(unlogged.length <= 4, `every job was run by one of the workers; without a job_done line: ${unlogged.join(', ')}`);
    if (unlogged.length > 0) t.diagnostic(`${unlogged.length} job(s) finished by worker-a right before the kill left no job_done line`);
    assert.ok(api.alive && survivor.alive, 'the API and the other worker kept running');
    const reruns = survivor.events.filter((e) => e.event === 'job_done' && e.duplicate === true).length;
    t.diagnostic(
      `worker-a ran ${byVictim.size} jobs, worker-b ${bySurvivor.size} (${reruns} of them already stored: saved but not acked at the kill); ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  });
});

test(`embedded (SQLite queue and store): the server is SIGKILLed mid-run and restarted on its data dir; all ${JOBS} jobs end with exactly one result`, {
  timeout: 300_000,
}, async (t) => {
  const started = Date.now();
  const defer = cleanups(t);
  const tmp = tempDir('sightline-crash-');
  defer(tmp.cleanup);
  writeTestModel(tmp.dir);
  const dataDir = join(tmp.dir, 'data');
  const procs = processes(defer);
  // Read-only views of the server's files (WAL: readers never block its writes).
  const open = (file: string) => {
    const handle = new Database(join(dataDir, file), { readonly: true, fileMustExist: true });
    defer(() => handle.close());
    return handle;
  };

  await withLogs(procs, async () => {
    // A short lease so the dead server's jobs come back in seconds (renewed while a job runs).
    const args = ['serve', '--host', '127.0.0.1', '--port', '0', '--models-dir', tmp.dir, '--data-dir', dataDir, '--queue-lease-ms', '3000', ...RUNTIME_ARGS];
    const first = procs.start('serve-1', args);
    const base1 = await first.baseUrl();
    await waitReady(base1, first);
    const queueDb = open('queue.db');
    const jobsIn = (state: string) => (queueDb.prepare('select count(*) as n from jobs where state = ?').get(state) as { n: number }).n;

    const image = await solidImage(MODEL_INPUT * 2, MODEL_INPUT * 2, 'jpeg');
    const { ids, failures } = await submitJobs(base1, image, JOBS, SUBMIT_CONCURRENCY);
    assert.deepEqual(failures, [], 'every POST /v1/jobs answers 202');
    assert.equal(new Set(ids).size, JOBS);

    const doneAtKill = await waitFor(
      () => {
        const n = jobsIn('done');
        return n >= 50 ? n : 0;
      },
      '50 jobs done',
      120_000,
    );
    first.child.kill('SIGKILL');
    await first.exited;
    assert.equal(first.exitStatus, 'SIGKILL');
    assert.ok(doneAtKill < JOBS - 20, `the kill came too late to be mid-run (${doneAtKill} of ${JOBS} done)`);
    // The jobs the dead server held keep their lease until it runs out: they are what must come back.
    const orphans = (queueDb.prepare(`select id from jobs where state = 'running'`).all() as { id: string }[]).map((r) => r.id);
    t.diagnostic(`serve-1 SIGKILLed with ${jobsIn('done')} jobs done, ${orphans.length} running, ${jobsIn('queued')} queued`);
    assert.ok(orphans.length > 0, 'the server held jobs when it died');

    const second = procs.start('serve-2', args);
    const base2 = await second.baseUrl();
    await waitReady(base2, second);
    // The orphans run again only once their lease (queue_lease_ms) has run out.
    const progress = () => `${jobsIn('done')} done, ${jobsIn('running')} running, ${jobsIn('queued')} queued, ${jobsIn('dead')} dead`;
    await waitFor(
      () => jobsIn('done') >= JOBS,
      () => `${JOBS} jobs done (${progress()})`,
      120_000,
    );

    const rows = open('results.db').prepare('select request_id, count(*) as n from results group by request_id').all() as { request_id: string; n: number }[];
    assertExactlyOnce(rows, ids);
    assert.deepEqual(await notDone(base2, ids), [], 'GET /v1/jobs/:id says done, with the result');
    for (const id of orphans) {
      const job = (await (await fetch(`${base2}/v1/jobs/${id}`)).json()) as { state: string; attempts: number };
      assert.equal(job.state, 'done');
      assert.ok(job.attempts >= 2, `orphan ${id} ran again after its lease ran out (attempts ${job.attempts})`);
    }
    const dead = (await (await fetch(`${base2}/v1/dead-letters`)).json()) as { jobs: unknown[] };
    assert.deepEqual(dead.jobs, []);
    t.diagnostic(`all ${JOBS} done once; ${orphans.length} orphans re-run after their lease ran out; ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });
});
