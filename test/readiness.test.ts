/**
 * Readiness as a running `sightline serve` reports it while RabbitMQ and
 * PostgreSQL come and go: both are reached through TCP proxies the test cuts
 * (connections dropped, new ones refused), the real services stay up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { writeDecoderModels, solidImage, tempDir } from './helpers/fixtures.js';
import { requireOrSkip } from './helpers/requirements.js';
import { probeTcp, TcpProxy } from './queue/helpers.js';
import { AMQP_URL, PG_URL, SightlineProcess, cleanups, freshDatabase, waitFor } from './helpers/cli-process.js';
import { deleteAmqpTopology } from '../src/queue/index.js';

interface Readyz {
  status: string;
  waiting_for?: string[];
  reason?: string;
  checks: { name: string; status: string; critical: boolean; state?: string; since?: string; reason?: string; last_checked?: string }[];
}

async function readyz(base: string): Promise<{ status: number; body: Readyz; retryAfter: string | null }> {
  const res = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: (await res.json()) as Readyz, retryAfter: res.headers.get('retry-after') };
}

function gauge(metrics: string, dependency: string): number | undefined {
  const line = metrics.split('\n').find((l) => l.startsWith(`sightline_dependency_up{dependency="${dependency}"}`));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

/** A proxy to host:port that starts refusing (the service is "down" until `up()`). */
async function cutProxy(url: URL, defaultPort: number) {
  const proxy = await TcpProxy.start(url.hostname, Number(url.port || defaultPort));
  proxy.refuse = true;
  const through = new URL(url.href);
  through.hostname = '127.0.0.1';
  through.port = String(proxy.port);
  return {
    proxy,
    url: through.href,
    up: () => {
      proxy.refuse = false;
    },
    down: () => {
      proxy.refuse = true;
      proxy.drop();
    },
  };
}

test('start-up with RabbitMQ and PostgreSQL down: 503 with the reasons meanwhile, ready once they come; later outages of each turn readiness 503 and back without a restart', {
  timeout: 180_000,
}, async (t) => {
  const amqp = new URL(AMQP_URL);
  const pgUrl = new URL(PG_URL);
  if (!requireOrSkip(t, await probeTcp(amqp.hostname, Number(amqp.port || 5672)), `RabbitMQ at ${amqp.host}`)) return;
  if (!requireOrSkip(t, await probeTcp(pgUrl.hostname, Number(pgUrl.port || 5432)), `PostgreSQL at ${pgUrl.host}`)) return;
  const defer = cleanups(t);
  // A prefix of its own: no other run's queues are touched, no broker lock needed.
  const prefix = `readiness-${randomUUID().slice(0, 8)}`;
  defer(() => deleteAmqpTopology(AMQP_URL, prefix));
  const { url: dbHref } = await freshDatabase(defer, 'sightline_readiness');
  const broker = await cutProxy(amqp, 5672);
  defer(() => broker.proxy.close());
  const database = await cutProxy(new URL(dbHref), 5432);
  defer(() => database.proxy.close());
  const tmp = tempDir('sightline-readiness-');
  defer(tmp.cleanup);
  writeDecoderModels(tmp.dir);

  const server = new SightlineProcess('serve', [
    'serve',
    ...['--host', '127.0.0.1', '--port', '0', '--models-dir', tmp.dir, '--default-model', 'v8', '--data-dir', join(tmp.dir, 'data')],
    ...['--queue-url', broker.url, '--queue-prefix', prefix, '--store-url', database.url],
    ...['--dependency-check-interval-ms', '300', '--dependency-retry-base-ms', '100', '--dependency-retry-max-ms', '500'],
    ...['--instances', '1', '--intra-op-threads', '1', '--log-level', 'info'],
  ]);
  defer(() => server.kill());

  // It listens although both are down, and says why it is not ready.
  const base = await server.baseUrl(30_000);
  assert.equal((await fetch(`${base}/livez`)).status, 200);
  const waiting = await waitFor(
    async () => {
      const r = await readyz(base);
      return r.body.waiting_for?.includes('store:postgres') && r.body.waiting_for.includes('queue:amqp') ? r : undefined;
    },
    () => `/readyz naming both dependencies\n${server.tail()}`,
    20_000,
  );
  assert.equal(waiting.status, 503);
  assert.equal(waiting.retryAfter, '1');
  assert.equal(waiting.body.status, 'not_ready');
  assert.match(waiting.body.reason!, /store:postgres: .+/);
  for (const name of ['store:postgres', 'queue:amqp']) {
    const check = waiting.body.checks.find((c) => c.name === name)!;
    assert.equal(check.state, 'down');
    assert.equal(check.critical, true);
    assert.ok(check.reason && check.reason.length > 0, `${name} has a reason`);
    assert.ok(Date.parse(check.since!) > 0 && Date.parse(check.last_checked!) >= Date.parse(check.since!));
  }
  // The log says what it waits for, on every try (with backoff).
  const waits = () => server.events.filter((e) => e.event === 'dependency_waiting' && e.dependency === 'store:postgres');
  await waitFor(
    () => waits().length >= 3,
    () => `three waiting log lines\n${server.tail()}`,
    10_000,
  );
  assert.match(String(waits()[0]!.msg), /^waiting for store:postgres \(try 1, next in [\d.]+ s\): /);
  // Routes that need them answer 503 with their reason, never a 5xx of another kind.
  const image = new Uint8Array(await solidImage(64, 64, 'jpeg'));
  const job = await fetch(`${base}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: image });
  assert.equal(job.status, 503);
  assert.equal(((await job.json()) as { error: { code: string } }).error.code, 'QUEUE_UNAVAILABLE');
  const results = await fetch(`${base}/v1/results`);
  assert.equal(results.status, 503);
  assert.equal(((await results.json()) as { error: { code: string } }).error.code, 'STORE_UNAVAILABLE');
  const metricsDown = await (await fetch(`${base}/metrics`)).text();
  assert.equal(gauge(metricsDown, 'store:postgres'), 0);
  assert.equal(gauge(metricsDown, 'queue:amqp'), 0);

  // Both come: ready without a restart, and a job goes through.
  database.up();
  broker.up();
  const ready = await waitFor(
    async () => ((await readyz(base)).status === 200 ? readyz(base) : undefined),
    () => `/readyz 200\n${server.tail()}`,
    45_000,
  );
  assert.equal(ready.body.status, 'ready');
  assert.equal(ready.body.waiting_for, undefined);
  for (const name of ['store:postgres', 'queue:amqp']) assert.equal(ready.body.checks.find((c) => c.name === name)?.state, 'up', name);
  // The event bus is not critical (readiness does not wait for it); it reconnects on its own schedule.
  await waitFor(
    async () => (await readyz(base)).body.checks.find((c) => c.name === 'events:amqp')?.state === 'up',
    () => `events:amqp up\n${server.tail()}`,
    45_000,
  );
  const pid = server.child.pid;
  const accepted = await fetch(`${base}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: image });
  assert.equal(accepted.status, 202, await accepted.clone().text());
  const { job_id } = (await accepted.json()) as { job_id: string };
  await waitFor(async () => ((await (await fetch(`${base}/v1/jobs/${job_id}`)).json()) as { state: string }).state === 'done', 'the job done', 30_000);
  assert.ok(server.events.some((e) => e.event === 'dependency_up' && e.dependency === 'store:postgres'));

  // Later outages, one at a time: each turns readiness 503 naming it, and 200 again when it is back.
  for (const [name, dep] of [
    ['queue:amqp', broker],
    ['store:postgres', database],
  ] as const) {
    const before = (await readyz(base)).body.checks.find((c) => c.name === name)!;
    dep.down();
    const down = await waitFor(
      async () => {
        const r = await readyz(base);
        return r.status === 503 && r.body.waiting_for?.includes(name) ? r : undefined;
      },
      () => `/readyz 503 for ${name}\n${server.tail()}`,
      20_000,
    );
    assert.deepEqual(down.body.waiting_for, [name], 'only the one that is down');
    const check = down.body.checks.find((c) => c.name === name)!;
    assert.ok(Date.parse(check.since!) > Date.parse(before.since!), 'since moves with the change');
    assert.equal(gauge(await (await fetch(`${base}/metrics`)).text(), name), 0);
    await server.waitEvent(`dependency_down ${name}`, (e) => e.event === 'dependency_down' && e.dependency === name, 5000);
    dep.up();
    await waitFor(
      async () => (await readyz(base)).status === 200,
      () => `/readyz 200 after ${name} is back\n${server.tail()}`,
      45_000,
    );
    assert.equal(gauge(await (await fetch(`${base}/metrics`)).text(), name), 1);
    await server.waitEvent(`${name} is back`, (e) => e.event === 'dependency_up' && e.dependency === name && typeof e.down_ms === 'number', 5000);
  }
  assert.equal(server.child.pid, pid);
  assert.ok(server.alive, 'never restarted');
});
