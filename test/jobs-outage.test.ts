/**
 * A RabbitMQ outage as a running `sightline serve` sees it: the broker is
 * reached through a TCP proxy that the test cuts (connections dropped, new ones
 * refused) while clients keep submitting jobs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { buildConstantModel, writeModel } from './helpers/onnx-builder.js';
import { LABELS, RAW_BOXES, manifest, solidImage, tempDir, yolov8Output } from './helpers/fixtures.js';
import { requireOrSkip } from './helpers/requirements.js';
import { probeTcp, TcpProxy } from './queue/helpers.js';
import { AMQP_URL, PG_URL, SightlineProcess, cleanups, freshDatabase, isolateBroker, waitFor } from './helpers/cli-process.js';

/** `queue_url` has no setting for the amqp prefix: the server uses the default `sightline.*` names. */
const OUTAGE_MS = 3500;

interface Attempt {
  /** Date.now() when the request was sent and when its answer (or error) came. */
  sent: number;
  answered: number;
  status: number;
  code?: string;
  retryAfter?: string | null;
  jobId?: string;
  error?: string;
}

/** Clients that POST jobs one after another (a short pause between), recording every outcome, until stopped. */
function submitters(base: string, image: Buffer, clients: number) {
  const attempts: Attempt[] = [];
  let stopped = false;
  const body = new Uint8Array(image);
  const loops = Array.from({ length: clients }, async (_, client) => {
    while (!stopped) {
      const sent = Date.now();
      try {
        const res = await fetch(`${base}/v1/jobs?line=outage-${client}`, {
          method: 'POST',
          headers: { 'content-type': 'image/jpeg' },
          body,
          signal: AbortSignal.timeout(20_000),
        });
        const json = (await res.json()) as { job_id?: string; error?: { code?: string } };
        attempts.push({
          sent,
          answered: Date.now(),
          status: res.status,
          code: json.error?.code,
          retryAfter: res.headers.get('retry-after'),
          jobId: json.job_id,
        });
      } catch (err) {
        attempts.push({ sent, answered: Date.now(), status: 0, error: (err as Error).message });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  });
  return {
    attempts,
    accepted: () => attempts.filter((a) => a.status === 202),
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

test('broker outage: POST /v1/jobs answers 503 QUEUE_UNAVAILABLE while RabbitMQ is unreachable, the server reconnects by itself, and every job that got a 202 completes', {
  timeout: 240_000,
}, async (t) => {
  const amqp = new URL(AMQP_URL);
  const brokerPort = Number(amqp.port || 5672);
  const pgUrl = new URL(PG_URL);
  if (!requireOrSkip(t, await probeTcp(amqp.hostname, brokerPort), `RabbitMQ at ${amqp.host}`)) return;
  if (!requireOrSkip(t, await probeTcp(pgUrl.hostname, Number(pgUrl.port || 5432)), `PostgreSQL at ${pgUrl.host}`)) return;
  const defer = cleanups(t);
  await isolateBroker(defer);
  const { url: dbHref, pool: db } = await freshDatabase(defer, 'sightline_outage');
  const proxy = await TcpProxy.start(amqp.hostname, brokerPort);
  defer(() => proxy.close());
  const tmp = tempDir('sightline-outage-');
  defer(tmp.cleanup);
  writeModel(
    tmp.dir,
    'outage',
    '1',
    // `slow`: ~20 ms an image, so the worker has jobs in hand and a backlog when the broker goes.
    buildConstantModel({ output: yolov8Output(), outputShape: [4 + LABELS.length, RAW_BOXES.length + 1], inputWidth: 64, inputHeight: 64, slow: true }),
    manifest({ format: 'yolov8', input: { width: 64, height: 64 } }),
  );
  const throughProxy = new URL(AMQP_URL);
  throughProxy.hostname = '127.0.0.1';
  throughProxy.port = String(proxy.port);
  // API and in-process worker in one process.
  const server = new SightlineProcess('serve', [
    'serve',
    ...['--host', '127.0.0.1', '--port', '0', '--models-dir', tmp.dir, '--data-dir', join(tmp.dir, 'data')],
    ...['--queue-url', throughProxy.href, '--store-url', dbHref],
    ...['--intra-op-threads', '1', '--instances', '1', '--worker-concurrency', '4', '--log-level', 'info'],
  ]);
  defer(() => server.kill());

  try {
    const base = await server.baseUrl();
    await waitFor(
      async () => {
        const res = await fetch(`${base}/readyz`).catch(() => undefined);
        await res?.arrayBuffer();
        return res?.status === 200;
      },
      () => `/readyz\n${server.tail()}`,
      60_000,
    );
    const pid = server.child.pid;
    const load = submitters(base, await solidImage(128, 128, 'jpeg'), 2);
    defer(() => load.stop());

    await waitFor(
      () => load.accepted().length >= 50,
      () => `50 jobs accepted before the outage (${JSON.stringify(load.attempts.slice(-3))})`,
      30_000,
    );
    const cutAt = Date.now();
    proxy.refuse = true;
    proxy.drop();
    const duringOutage = () => load.attempts.filter((a) => a.sent > cutAt);
    await waitFor(
      () => duringOutage().filter((a) => a.code === 'QUEUE_UNAVAILABLE').length >= 5,
      () => `503s after the cut\n${server.tail()}`,
      15_000,
    );
    await new Promise((r) => setTimeout(r, Math.max(0, cutAt + OUTAGE_MS - Date.now())));
    const restoreAt = Date.now();
    proxy.refuse = false;
    const back = await waitFor(
      () => load.attempts.find((a) => a.sent > restoreAt && a.status === 202),
      () => `a 202 after the broker came back\n${server.tail()}`,
      45_000,
    );
    await waitFor(
      () => load.accepted().filter((a) => a.sent > restoreAt).length >= 30,
      () => '30 jobs accepted after the outage',
      30_000,
    );
    await load.stop();

    const { attempts } = load;
    assert.deepEqual(
      attempts.filter((a) => a.status === 0),
      [],
      'no request failed at the transport level: the server stayed up',
    );
    assert.deepEqual(
      attempts.filter((a) => a.status !== 202 && !(a.status === 503 && a.code === 'QUEUE_UNAVAILABLE')),
      [],
      'every answer is 202 or 503 QUEUE_UNAVAILABLE',
    );
    assert.deepEqual(
      attempts.filter((a) => a.status === 503 && a.retryAfter === null),
      [],
      'every 503 carries Retry-After',
    );
    const cutOff = attempts.filter((a) => a.sent > cutAt && a.answered < restoreAt);
    assert.ok(cutOff.length >= 5, `requests made while the broker was unreachable (${cutOff.length})`);
    assert.deepEqual(
      cutOff.filter((a) => a.code !== 'QUEUE_UNAVAILABLE'),
      [],
      'while the broker is unreachable every POST /v1/jobs answers 503 QUEUE_UNAVAILABLE',
    );
    assert.equal(server.alive, true, 'no restart');
    assert.equal(server.child.pid, pid);

    // Every 202 is a job that completes: state done, its own result stored once.
    const accepted = load.accepted().map((a) => a.jobId!);
    const stored = async () =>
      (await db.query<{ request_id: string; n: number }>('select request_id, count(*)::int as n from results group by request_id')).rows;
    let missing = accepted.length;
    await waitFor(
      async () => {
        const have = new Set((await stored()).map((r) => r.request_id));
        missing = accepted.filter((id) => !have.has(id)).length;
        return missing === 0;
      },
      () => `every accepted job's result (${missing} of ${accepted.length} missing)\n${server.tail()}`,
      90_000,
    );
    const rows = await stored();
    assert.deepEqual(
      rows.filter((r) => r.n !== 1),
      [],
      'no result stored twice',
    );
    const bad: string[] = [];
    for (const id of accepted) {
      const job = (await (await fetch(`${base}/v1/jobs/${id}`)).json()) as { state?: string; result?: { request_id?: string } };
      if (job.state !== 'done' || job.result?.request_id !== id) bad.push(`${id}: ${JSON.stringify(job).slice(0, 200)}`);
    }
    assert.deepEqual(bad, [], 'GET /v1/jobs/:id of every accepted job: done, with its result');

    const refused = attempts.filter((a) => a.code === 'QUEUE_UNAVAILABLE');
    const acceptedIds = new Set(accepted);
    t.diagnostic(
      `${attempts.length} POSTs: ${accepted.length} accepted, ${refused.length} × 503 QUEUE_UNAVAILABLE (slowest ${Math.max(...refused.map((a) => a.answered - a.sent))} ms); ` +
        `outage ${restoreAt - cutAt} ms, first 202 ${back.answered - restoreAt} ms after the broker came back; ` +
        `${rows.filter((r) => !acceptedIds.has(r.request_id)).length} results of jobs answered 503 (published, confirm lost with the connection)`,
    );
  } catch (err) {
    process.stderr.write(`${server.tail()}\n`);
    throw err;
  }
});
