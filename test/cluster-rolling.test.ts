/**
 * The local cluster, rolling restart: two API processes (`serve --no-worker`)
 * and a worker on RabbitMQ and PostgreSQL, all real processes. Clients send
 * POST /v1/detect and POST /v1/jobs to both APIs without pause, over keep-alive
 * connections, while API 1 is SIGTERMed and started again, then API 2. Like a
 * load balancer, a client retries what the server did not take (connection
 * refused, a 503 before the route ran) on the other API. No request the server
 * accepted may be lost: no 5xx after acceptance, no answer cut, no request cut
 * on a kept-alive connection, and every accepted job completes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { deleteAmqpTopology } from '../src/queue/index.js';
import { buildConstantModel, writeModel } from './helpers/onnx-builder.js';
import { LABELS, RAW_BOXES, manifest, tempDir, yolov8Output } from './helpers/fixtures.js';
import { requireOrSkip } from './helpers/requirements.js';
import { startApp } from './helpers/fixtures.js';
import { httpDrainOf } from '../src/server/drain.js';
import { probeTcp } from './queue/helpers.js';
import { AMQP_URL, PG_URL, ROOT, SightlineProcess, cleanups, freshDatabase, waitFor } from './helpers/cli-process.js';

const CLIENTS = 8;
const MODEL_INPUT = 64;
const RUNTIME_ARGS = ['--intra-op-threads', '1', '--instances', '1', '--worker-concurrency', '4', '--no-snapshots', '--log-level', 'info'];

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A request that failed without an answer: `answered` when the response had begun (its body was cut). */
class RequestFailure extends Error {
  constructor(
    readonly code: string,
    readonly reused: boolean,
    readonly answered: boolean,
  ) {
    super(`${code} (${reused ? 'reused' : 'new'} connection, ${answered ? 'mid-response' : 'before any answer'})`);
  }
}

/** One POST over `agent` (keep-alive), telling apart a refused connect, a reset on a reused socket and a cut answer. */
function post(agent: Agent, base: string, path: string, headers: Record<string, string>, body: Uint8Array): Promise<Answer> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpRequest(
      {
        agent,
        method: 'POST',
        hostname: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        headers: { ...headers, 'content-length': String(body.length) },
      },
      (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (!res.complete) return reject(new RequestFailure('incomplete', req.reusedSocket, true));
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', (err: NodeJS.ErrnoException) => reject(new RequestFailure(err.code ?? err.message, req.reusedSocket, true)));
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error('client timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => reject(new RequestFailure(err.code ?? err.message, req.reusedSocket, answered)));
    req.end(body);
  });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

async function ready(base: string, proc: SightlineProcess, timeoutMs = 90_000): Promise<void> {
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

/** The 503 a closing server gives before any hook or route runs (Fastify's return503OnClosing): the request was not taken. */
function refusedWhileClosing(a: Answer): boolean {
  if (a.status !== 503) return false;
  try {
    return (JSON.parse(a.body) as { error?: unknown }).error === 'Service Unavailable';
  } catch {
    return false;
  }
}

interface Tally {
  accepted: { detect: number; jobs: number };
  jobIds: Set<string>;
  /** Attempts answered 503 before acceptance, or refused at connect: retried on the other API. */
  refused: number;
  /** Attempts reset before any answer: the attempt ids, checked against the servers' logs afterwards. */
  resets: { attemptId: string; reused: boolean; code: string }[];
  lost: string[];
}

test('cluster: a rolling restart of 2 API processes under continuous load loses no accepted request', { timeout: 240_000 }, async (t) => {
  const amqp = new URL(AMQP_URL);
  const pgUrl = new URL(PG_URL);
  if (!requireOrSkip(t, await probeTcp(amqp.hostname, Number(amqp.port || 5672)), `RabbitMQ at ${amqp.host}`)) return;
  if (!requireOrSkip(t, await probeTcp(pgUrl.hostname, Number(pgUrl.port || 5432)), `PostgreSQL at ${pgUrl.host}`)) return;
  const defer = cleanups(t);
  const prefix = `cluster-rolling-${randomUUID().slice(0, 8)}`;
  defer(() => deleteAmqpTopology(AMQP_URL, prefix));
  const { url: dbHref, pool: db } = await freshDatabase(defer, 'sightline_rolling');
  const tmp = tempDir('sightline-rolling-');
  defer(tmp.cleanup);
  writeModel(
    tmp.dir,
    'cluster',
    '1',
    buildConstantModel({ output: yolov8Output(), outputShape: [4 + LABELS.length, RAW_BOXES.length + 1], inputWidth: MODEL_INPUT, inputHeight: MODEL_INPUT }),
    manifest({ format: 'yolov8', input: { width: MODEL_INPUT, height: MODEL_INPUT } }),
  );

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
  // Fixed ports: a restarted API comes back where its clients (and a load balancer) expect it.
  const ports = [await freePort(), await freePort()];
  const bases = ports.map((p) => `http://127.0.0.1:${p}`);
  const startApi = (i: number, generation: number) =>
    start(`api-${i + 1}.${generation}`, ['serve', '--no-worker', '--host', '127.0.0.1', '--port', String(ports[i]), ...shared]);

  const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });
  defer(() => agent.destroy());
  const image = new Uint8Array(readFileSync(join(ROOT, 'samples', 'ng-03.jpg')));
  const tally: Tally = { accepted: { detect: 0, jobs: 0 }, jobIds: new Set(), refused: 0, resets: [], lost: [] };
  let running = true;
  const inRotation = [true, true];

  /** One logical request, tried on one API then the other until an API takes it. */
  const send = async (n: number, first: number) => {
    const kind = n % 2 === 0 ? 'detect' : 'jobs';
    const logical = `rr-${n}`;
    for (let attempt = 0; attempt < 200; attempt++) {
      const target = (first + attempt) % 2;
      // Like a load balancer: an API that is down stays out of rotation until its /readyz says 200.
      const base = bases[inRotation[target] ? target : 1 - target]!;
      const attemptId = `${logical}-${attempt}`;
      // The same Idempotency-Key on every try: a job is enqueued once however often it is retried.
      const headers: Record<string, string> = {
        'content-type': 'image/jpeg',
        'x-request-id': attemptId,
        ...(kind === 'jobs' ? { 'idempotency-key': logical } : {}),
      };
      let answer: Answer;
      try {
        answer = await post(agent, base, `/v1/${kind}?line=rolling-${n % 3}`, headers, image);
      } catch (err) {
        if (!(err instanceof RequestFailure)) throw err;
        if (err.answered) {
          tally.lost.push(`${attemptId} ${kind}: answer cut: ${err.message}`);
          return;
        }
        if (err.code !== 'ECONNREFUSED') tally.resets.push({ attemptId, reused: err.reused, code: err.code });
        else tally.refused++;
        if (attempt % 2 === 1) await new Promise((r) => setTimeout(r, 50)); // both refused: the restarted one is on its way
        continue;
      }
      if (refusedWhileClosing(answer)) {
        tally.refused++;
        continue;
      }
      if (kind === 'detect') {
        const result = answer.status === 200 ? (JSON.parse(answer.body) as { request_id?: string; verdict?: string; detections?: unknown[] }) : undefined;
        if (result?.request_id === attemptId && (result.verdict === 'ok' || result.verdict === 'ng') && Array.isArray(result.detections))
          tally.accepted.detect++;
        else tally.lost.push(`${attemptId} detect: ${answer.status} ${answer.body.slice(0, 200)}`);
      } else {
        const job = answer.status === 202 ? (JSON.parse(answer.body) as { job_id?: string }) : undefined;
        if (job?.job_id) {
          tally.accepted.jobs++;
          tally.jobIds.add(job.job_id);
        } else tally.lost.push(`${attemptId} jobs: ${answer.status} ${answer.body.slice(0, 200)}`);
      }
      return;
    }
    tally.lost.push(`${logical}: no API took it in 200 tries`);
  };

  try {
    const apis = [startApi(0, 1), startApi(1, 1)];
    const worker = start('worker', ['worker', '--worker-http-host', '127.0.0.1', '--worker-http-port', '0', ...shared]);
    await ready(bases[0]!, apis[0]!);
    await ready(bases[1]!, apis[1]!);
    await worker.waitEvent('worker_started', (e) => e.event === 'worker_started', 90_000);

    let next = 0;
    const clients = Array.from({ length: CLIENTS }, async (_, c) => {
      while (running) await send(next++, c % 2);
    });
    const settled = async (count: number) => {
      const target = tally.accepted.detect + tally.accepted.jobs + count;
      await waitFor(() => tally.accepted.detect + tally.accepted.jobs >= target, `${count} more accepted requests`, 60_000);
    };
    const restarts: string[] = [];
    try {
      await settled(100);
      for (const i of [0, 1]) {
        const old = apis[i]!;
        const before = tally.accepted.detect + tally.accepted.jobs;
        old.child.kill('SIGTERM');
        await old.exited;
        assert.equal(old.exitStatus, 'code 0', `${old.name} drains and exits 0\n${old.tail()}`);
        inRotation[i] = false;
        const drained = old.events.find((e) => e.event === 'server_drained');
        const fresh = startApi(i, 2);
        apis[i] = fresh;
        await ready(bases[i]!, fresh);
        inRotation[i] = true;
        restarts.push(
          `${old.name} restarted: ${tally.accepted.detect + tally.accepted.jobs - before} requests accepted meanwhile; drain ${JSON.stringify(drained ?? 'not logged')}`,
        );
        // The restarted API takes its share again before the next one goes.
        await waitFor(() => fresh.events.some((e) => e.event === 'request_success' && e.route !== '/readyz'), `${fresh.name} serving`, 60_000);
        await settled(100);
      }
    } finally {
      running = false;
      await Promise.all(clients);
    }

    // A reset before any answer is lost too if the server had taken the request (its request_start is logged).
    const started = new Set(all.flatMap((p) => p.events.filter((e) => e.event === 'request_start').map((e) => String(e.request_id))));
    for (const r of tally.resets) if (started.has(r.attemptId)) tally.lost.push(`${r.attemptId}: reset after the server took it (${r.code})`);
    assert.deepEqual(tally.lost, [], 'no accepted request is lost');
    // The drain answers every request on a kept-alive connection (Connection: close) instead of cutting it.
    assert.deepEqual(
      tally.resets.filter((r) => r.reused),
      [],
      'no request sent on a kept-alive connection meets a reset',
    );

    // Every accepted job completes, once.
    const ids = [...tally.jobIds];
    assert.ok(ids.length > 0 && tally.accepted.detect > 0);
    const done = async () =>
      (await db.query<{ n: number }>(`select count(*)::int as n from job_states where state = 'done' and id = any($1)`, [ids])).rows[0]!.n;
    let n = 0;
    await waitFor(
      async () => (n = await done()) === ids.length,
      () => `${ids.length} accepted jobs done (have ${n})`,
      120_000,
    );
    const { rows } = await db.query<{ n: number }>('select count(*)::int as n from results where request_id = any($1)', [ids]);
    assert.equal(rows[0]!.n, ids.length, 'one stored result per accepted job');
    const { rows: jobs } = await db.query<{ n: number }>('select count(*)::int as n from job_states');
    assert.equal(jobs[0]!.n, ids.length, 'no job enqueued twice by a retried POST (Idempotency-Key)');

    for (const line of restarts) t.diagnostic(line);
    t.diagnostic(
      `accepted ${tally.accepted.detect} detect + ${tally.accepted.jobs} jobs; ${tally.refused} attempts refused before acceptance and retried; ` +
        `${tally.resets.length} reset before any answer on a new connection (${[...new Set(tally.resets.map((r) => r.code))].join(', ') || 'none'})`,
    );
  } catch (err) {
    for (const p of all) process.stderr.write(`${p.tail()}\n`);
    throw err;
  }
});

/** A GET over `agent`, with whether it went out on a kept-alive socket. */
function get(agent: Agent, base: string, path: string): Promise<Answer & { reused: boolean }> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ agent, hostname: url.hostname, port: url.port, path: url.pathname }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), reused: req.reusedSocket }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

test('drain (serve on SIGTERM): refuses new connections, answers a request on a kept-alive connection with Connection: close (/readyz: 503 draining), and counts a socket idle for the whole grace', async (t) => {
  const app = await startApp({}, { wait: false });
  t.after(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  const busy = new Agent({ keepAlive: true, maxSockets: 1 });
  const quiet = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => {
    busy.destroy();
    quiet.destroy();
  });
  // Each client now holds one idle kept-alive socket.
  for (const agent of [busy, quiet]) assert.equal((await get(agent, base, '/livez')).status, 200);

  const draining = httpDrainOf(app)!.drain(1000);
  // The busy client sends on its kept-alive socket during the drain: answered, and told to close;
  // /readyz says the server is leaving the rotation.
  const during = await get(busy, base, '/readyz');
  assert.equal(during.reused, true);
  assert.equal(during.status, 503);
  assert.equal(during.headers.connection, 'close');
  const body = JSON.parse(during.body) as { waiting_for: string[] };
  assert.ok(body.waiting_for.includes('draining'), during.body);
  // A new connection is refused: a load balancer retries it elsewhere without doubt.
  const refused = await new Promise<string>((resolve) => {
    const socket = connect(Number(new URL(base).port), '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
  assert.equal(refused, 'ECONNREFUSED');
  // The quiet client never sent again: its socket is the one left for app.close() to cut.
  assert.deepEqual(await draining, { idleLeft: 1 });
});
