/**
 * The local cluster, jobs: two API processes (`serve --no-worker`) and workers
 * (`sightline worker`) on RabbitMQ and PostgreSQL, all real processes. 1,000
 * jobs go in through both APIs while the workers scale 1 → 3 → 1: two more
 * start mid-run, one is SIGKILLed (a replacement starts, as an orchestrator
 * would do), then two are SIGTERMed (scale-in drains: what they hold finishes
 * or goes back). Every accepted job must complete exactly once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deleteAmqpTopology } from '../src/queue/index.js';
import { buildConstantModel, writeModel } from './helpers/onnx-builder.js';
import { LABELS, RAW_BOXES, manifest, tempDir, yolov8Output } from './helpers/fixtures.js';
import { requireOrSkip } from './helpers/requirements.js';
import { probeTcp } from './queue/helpers.js';
import { AMQP_URL, PG_URL, ROOT, SightlineProcess, cleanups, freshDatabase, waitFor, type Log } from './helpers/cli-process.js';

const JOBS = 1000;
// Enough parallel submitters to run ahead of three workers, however fast a lone job runs (a
// worker's first job of a burst takes the lone-request session with every core).
const SUBMIT_CONCURRENCY = 24;
/**
 * Accepted and not yet stored before a kill or a SIGTERM: well over what the three workers
 * hold (4 each), so the queue has some too. The workers are held still (SIGSTOP) while this
 * backlog forms: left running, three of them kept up with what two APIs accepted and CI runs
 * timed out waiting for 13 or 20.
 */
const JOBS_WAITING = 30;
/**
 * Jobs held back for each scaling step (SIGKILL, SIGTERM, and a third trickled out
 * while a new worker waits for its first job), and how far submission runs ahead of
 * the stored results.
 */
const RESERVE = 100;
/** Jobs let in at a time while a new worker has none yet: the running workers must not drain them all first. */
const TRICKLE = 10;
const MAX_WAITING = 100;
/** Input size of the test model: its `slow` convolutions make a job take some ms of CPU, so workers hold jobs a while. */
const MODEL_INPUT = 64;
/** Each process: one single-threaded instance; a worker holds 4 jobs at once (its prefetch), so a kill or a SIGTERM finds jobs in hand while the queue has any. */
// The lone-request session off: with it, an idle worker runs each job on both cores and
// drains bursts before the backlog this test needs can form.
const RUNTIME_ARGS = [
  '--intra-op-threads',
  '1',
  '--instances',
  '1',
  '--lone-request-threads',
  '1',
  '--worker-concurrency',
  '4',
  '--no-snapshots',
  '--log-level',
  'info',
];

function writeTestModel(repo: string): void {
  writeModel(
    repo,
    'cluster',
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

/** The held-out sample images: real JPEGs of a line camera. */
function sampleImages(): Uint8Array<ArrayBuffer>[] {
  const dir = join(ROOT, 'samples');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.jpg'))
    .sort()
    .map((f) => new Uint8Array(readFileSync(join(dir, f))));
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

/**
 * POSTs jobs to the bases in turn, at most `maxWaiting` beyond those stored and
 * never past `cap`: the run lasts as long as the scaling steps take, however fast
 * the workers are, and each step gets jobs waiting when `release()` raises the cap.
 */
class Feeder {
  readonly ids: string[] = [];
  readonly failures: string[] = [];
  private next = 0;
  private stopped = false;
  stored = 0;
  readonly done: Promise<void>;

  constructor(
    private readonly bases: string[],
    private readonly images: Uint8Array<ArrayBuffer>[],
    private readonly total: number,
    private cap: number,
    private readonly maxWaiting: number,
  ) {
    this.done = Promise.all(Array.from({ length: SUBMIT_CONCURRENCY }, () => this.loop())).then(() => undefined);
  }

  get submitted(): number {
    return this.next;
  }

  /** Lets `n` more jobs in. */
  release(n: number): void {
    this.cap = Math.min(this.total, this.cap + n);
  }

  /** True when every job let in so far is submitted and stored: nothing waits for a worker. */
  get idle(): boolean {
    return this.next >= this.cap && this.stored >= this.next;
  }

  /** Ends the submit loops (they wait for the cap to rise otherwise and would keep the test process alive). */
  stop(): void {
    this.stopped = true;
  }

  private async loop(): Promise<void> {
    while (this.next < this.total && !this.stopped) {
      if (this.next >= this.cap || this.next - this.stored >= this.maxWaiting) {
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      const i = this.next++;
      try {
        const res = await fetch(`${this.bases[i % this.bases.length]}/v1/jobs?line=cluster-${i % 4}`, {
          method: 'POST',
          headers: { 'content-type': 'image/jpeg' },
          body: this.images[i % this.images.length]!,
          signal: AbortSignal.timeout(30_000),
        });
        const json = (await res.json()) as { job_id?: string };
        if (res.status === 202 && json.job_id) this.ids.push(json.job_id);
        else this.failures.push(`#${i}: ${res.status} ${JSON.stringify(json)}`);
      } catch (err) {
        this.failures.push(`#${i}: ${(err as Error).message}`);
      }
    }
  }
}

/** GET /v1/jobs/:id for every id, spread over the APIs; returns the ids that are not `done` with their own result. */
async function notDone(bases: string[], ids: string[]): Promise<string[]> {
  const bad: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < ids.length) {
        const i = next++;
        const id = ids[i]!;
        const res = await fetch(`${bases[i % bases.length]}/v1/jobs/${id}`, { signal: AbortSignal.timeout(10_000) });
        const job = (await res.json()) as { state?: string; result?: { request_id?: string } };
        if (res.status !== 200 || job.state !== 'done' || job.result?.request_id !== id) bad.push(`${id}: ${res.status} ${JSON.stringify(job).slice(0, 200)}`);
      }
    }),
  );
  return bad;
}

/** The log events of `proc` after its first event matching `from`. */
function eventsAfter(proc: SightlineProcess, from: (e: Log) => boolean): Log[] {
  const at = proc.events.findIndex(from);
  return at < 0 ? [] : proc.events.slice(at + 1);
}

test(`cluster: 2 APIs and workers scaling 1 → 3 → 1 (one SIGKILLed, two SIGTERMed) on RabbitMQ + PostgreSQL; all ${JOBS} jobs complete exactly once`, {
  timeout: 240_000,
}, async (t) => {
  const amqp = new URL(AMQP_URL);
  const pgUrl = new URL(PG_URL);
  if (!requireOrSkip(t, await probeTcp(amqp.hostname, Number(amqp.port || 5672)), `RabbitMQ at ${amqp.host}`)) return;
  if (!requireOrSkip(t, await probeTcp(pgUrl.hostname, Number(pgUrl.port || 5432)), `PostgreSQL at ${pgUrl.host}`)) return;
  const defer = cleanups(t);
  // A queue prefix and a database of its own: nothing shared with other tests or runs, no broker lock.
  const prefix = `cluster-${randomUUID().slice(0, 8)}`;
  defer(() => deleteAmqpTopology(AMQP_URL, prefix));
  const { url: dbHref, pool: db } = await freshDatabase(defer, 'sightline_cluster');
  const tmp = tempDir('sightline-cluster-');
  defer(tmp.cleanup);
  writeTestModel(tmp.dir);

  const all: SightlineProcess[] = [];
  const start = (name: string, args: string[]) => {
    const p = new SightlineProcess(name, args);
    all.push(p);
    defer(() => p.kill());
    return p;
  };
  const shared = [
    '--queue-url',
    AMQP_URL,
    '--queue-prefix',
    prefix,
    '--store-url',
    dbHref,
    '--models-dir',
    tmp.dir,
    '--data-dir',
    join(tmp.dir, 'data'),
    ...RUNTIME_ARGS,
  ];
  const startApi = (name: string) => start(name, ['serve', '--no-worker', '--host', '127.0.0.1', '--port', '0', ...shared]);
  // Port 0: several workers on one host.
  const startWorker = (name: string) => start(name, ['worker', '--worker-http-host', '127.0.0.1', '--worker-http-port', '0', ...shared]);
  const consuming = (w: SightlineProcess) => w.waitEvent('worker_started', (e) => e.event === 'worker_started', 90_000);

  try {
    // The first API creates the tables before the other processes start (processes that create them together race).
    const api1 = startApi('api-1');
    const base1 = await api1.baseUrl();
    await waitReady(base1, api1);
    const api2 = startApi('api-2');
    const w1 = startWorker('worker-1');
    const base2 = await api2.baseUrl();
    await waitReady(base2, api2);
    await consuming(w1);
    const bases = [base1, base2];

    const stored = async () => (feeder.stored = (await db.query<{ n: number }>('select count(*)::int as n from results')).rows[0]!.n);
    const started = Date.now();
    // Three reserves of jobs are held back: one released before each step that must find jobs in hand,
    // one trickled out while a new worker waits for its first job.
    const feeder = new Feeder(bases, sampleImages(), JOBS, JOBS - 3 * RESERVE, MAX_WAITING);
    defer(() => feeder.stop());
    let trickle = RESERVE;
    // A worker that starts after the others may find the queue drained by them (the feeder waits at
    // its cap): then a few more jobs are let in until it has run `n`.
    const ran = (w: SightlineProcess, n: number) =>
      waitFor(
        () => {
          if (w.jobsDone().size >= n || !w.alive) return true;
          if (feeder.idle && trickle > 0) {
            feeder.release(TRICKLE);
            trickle -= TRICKLE;
          }
          return false;
        },
        () => `${w.name} to finish ${n} jobs (${feeder.submitted} submitted, ${feeder.stored} stored)`,
        60_000,
      );
    const counting = setInterval(() => void stored().catch(() => undefined), 200);
    defer(() => clearInterval(counting));
    /**
     * Holds `workers` still (SIGSTOP: each keeps the jobs it was running or had prefetched),
     * releases a reserve and waits until that many accepted jobs have no result, so the
     * queue has work too; answers how many were waiting. The caller kills, then `resume`s.
     */
    const withJobsWaiting = async (workers: SightlineProcess[]): Promise<number> => {
      for (const w of workers) w.child.kill('SIGSTOP');
      feeder.release(RESERVE);
      let waiting = 0;
      await waitFor(
        async () => (waiting = feeder.ids.length - (await stored())) >= JOBS_WAITING,
        () => `${JOBS_WAITING} jobs waiting (${waiting} now; ${feeder.ids.length} accepted)`,
        60_000,
      );
      return waiting;
    };
    const resume = (workers: SightlineProcess[]) => {
      for (const w of workers) if (w.alive) w.child.kill('SIGCONT');
    };
    const timeline: string[] = [];
    const mark = async (what: string) => timeline.push(`${((Date.now() - started) / 1000).toFixed(1)} s, ${await stored()} stored: ${what}`);

    // 1 → 3: two more workers while one is at work.
    await waitFor(async () => (await stored()) >= 50, '50 stored results with one worker', 60_000);
    await mark('starting worker-2 and worker-3');
    const w2 = startWorker('worker-2');
    const w3 = startWorker('worker-3');
    await Promise.all([consuming(w2), consuming(w3)]);
    await Promise.all([ran(w2, 1), ran(w3, 1)]);
    await mark('3 workers consuming');

    // One of them dies without warning: what it held goes back to the queue. A replacement starts.
    const waitingAtKill = await withJobsWaiting([w1, w2, w3]);
    w2.child.kill('SIGKILL');
    await w2.exited;
    resume([w1, w3]);
    assert.equal(w2.exitStatus, 'SIGKILL');
    await mark(`worker-2 SIGKILLed after ${w2.jobsDone().size} jobs, ${waitingAtKill} jobs waiting`);
    const w4 = startWorker('worker-4');
    await consuming(w4);
    await ran(w4, 1);
    await mark('worker-4 (replacement) consuming');

    // 3 → 1: scale-in by SIGTERM while the queue still has work; both must drain and exit 0.
    const backlog = await withJobsWaiting([w1, w3, w4]);
    resume([w1]);
    // Delivered while they are stopped, acted on when they go on: each still holds what it had.
    w3.child.kill('SIGTERM');
    w4.child.kill('SIGTERM');
    resume([w3, w4]);
    await Promise.all([w3.exited, w4.exited]);
    await mark(`worker-3 and worker-4 SIGTERMed with ${backlog} jobs waiting, and exited`);
    for (const w of [w3, w4]) {
      assert.equal(w.exitStatus, 'code 0', `${w.name} exits 0 after its drain\n${w.tail()}`);
      assert.ok(
        w.events.some((e) => e.event === 'worker_stopped'),
        `${w.name} logs worker_stopped\n${w.tail()}`,
      );
    }
    assert.ok(backlog >= JOBS_WAITING, `the scale-in came while jobs were waiting (${backlog})`);
    // Jobs in hand at SIGTERM finished during the drain (the rest were given back, unacked).
    const drained = [w3, w4].flatMap((w) => eventsAfter(w, (e) => e.event === 'worker_stopping').filter((e) => e.event === 'job_done'));
    t.diagnostic(`${drained.length} job(s) finished by the SIGTERMed workers during their drain`);

    // What is left of the trickle reserve.
    feeder.release(JOBS);
    await feeder.done;
    const { ids, failures } = feeder;
    assert.deepEqual(failures, [], 'every POST /v1/jobs answers 202');
    assert.equal(new Set(ids).size, JOBS, 'job ids are unique');

    let n = 0;
    await waitFor(
      async () => (n = await stored()) >= JOBS,
      () => `${JOBS} stored results (have ${n})`,
      120_000,
    );
    const seconds = (Date.now() - started) / 1000;
    await mark('all stored');
    const states = async () =>
      (await db.query<{ state: string; n: number }>('select state, count(*)::int as n from job_states group by state order by state')).rows;
    await waitFor(async () => (await states()).find((s) => s.state === 'done')?.n === JOBS, 'every job state done', 30_000);

    // Exactly once: one stored result per accepted job id, and nothing else.
    const { rows } = await db.query<{ request_id: string; n: number }>('select request_id, count(*)::int as n from results group by request_id');
    assert.deepEqual(
      rows.filter((r) => r.n !== 1),
      [],
      'a result stored more than once',
    );
    const storedIds = new Set(rows.map((r) => r.request_id));
    assert.deepEqual(
      ids.filter((id) => !storedIds.has(id)),
      [],
      'an accepted job without a stored result',
    );
    assert.equal(rows.length, JOBS, 'results no accepted job explains');
    assert.deepEqual(await states(), [{ state: 'done', n: JOBS }], 'no job dead, none left queued or running');
    assert.deepEqual(await notDone(bases, ids), [], 'GET /v1/jobs/:id says done with its result, on either API');
    const dead = (await (await fetch(`${base1}/v1/dead-letters`)).json()) as { jobs: unknown[] };
    assert.deepEqual(dead.jobs, [], 'the dead-letter queue is empty');
    assert.ok(api1.alive && api2.alive && w1.alive, 'the APIs and worker-1 kept running');
    for (const p of all)
      assert.deepEqual(
        p.events.filter((e) => e.event === 'job_dead'),
        [],
        `${p.name} logged no job_dead`,
      );

    // Figures: who ran what, and the redeliveries the logs show.
    const doneLines = all.flatMap((p) => p.events.filter((e) => e.event === 'job_done'));
    const runs = new Map<string, number>();
    for (const e of doneLines) runs.set(String(e.job_id), (runs.get(String(e.job_id)) ?? 0) + 1);
    const ranTwice = [...runs.values()].filter((c) => c > 1).length;
    const duplicates = doneLines.filter((e) => e.duplicate === true).length;
    const laterAttempts = doneLines.filter((e) => Number(e.attempt) > 1).length;
    const { rows: retried } = await db.query<{ n: number }>('select count(*)::int as n from job_states where attempts > 1');
    const perWorker = [w1, w2, w3, w4].map((w) => `${w.name} ${w.jobsDone().size}`).join(', ');
    for (const line of timeline) t.diagnostic(line);
    t.diagnostic(
      `${JOBS} jobs in ${seconds.toFixed(1)} s (${(JOBS / seconds).toFixed(1)} jobs/s); done by ${perWorker}; ` +
        `redeliveries: ${ranTwice} job(s) run twice (${duplicates} found their result already stored), ` +
        `${laterAttempts} done on a later attempt, ${retried[0]!.n} job state(s) with attempts > 1`,
    );
  } catch (err) {
    for (const p of all) process.stderr.write(`${p.tail()}\n`);
    throw err;
  }
});
