import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import Fastify from 'fastify';
import { Counter, Gauge, Histogram } from 'prom-client';
import { createMetrics, type Metrics } from '../src/metrics/metrics.js';
import {
  ALERT_RULES,
  AlertEngine,
  MetricsView,
  WebhookNotifier,
  alertOptionsFromConfig,
  alertWebhooksFromConfig,
  createAlertEngine,
  histogramQuantile,
  promDuration,
  type AlertOptions,
  type WebhookPayload,
} from '../src/alerts/index.js';
import { REQUEST_DURATION } from '../src/alerts/rules.js';
import { alertRoutes } from '../src/server/routes/alerts.js';
import { startApp } from './helpers/fixtures.js';
import { snapshotMetrics } from '../src/snapshots/metrics.js';
import { outputMetrics } from '../src/outputs/metrics.js';

// ---------------------------------------------------------------- helpers

/** A webhook receiver on a free port: records each JSON body; `answer` decides the status. */
class Receiver {
  readonly bodies: WebhookPayload[] = [];
  hits = 0;
  answer: (hit: number, req: IncomingMessage) => number | 'hang' | { status: number; headers: Record<string, string> } = () => 200;
  private server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      this.hits++;
      const a = this.answer(this.hits, req);
      if (a === 'hang') return; // never answers: the client times out
      const { status, headers } = typeof a === 'number' ? { status: a, headers: {} } : a;
      if (status >= 200 && status < 300) this.bodies.push(JSON.parse(Buffer.concat(chunks).toString()) as WebhookPayload);
      res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end('ok');
    });
  });
  url = '';

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}/hook`;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  async waitFor(count: number, timeoutMs = 5000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.bodies.length < count) {
      if (Date.now() > until) throw new Error(`webhook got ${this.bodies.length} notifications, expected ${count}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** The real metric definitions, plus those the rules read that other work adds to createMetrics. */
function metricsWithExtras(): {
  m: Metrics;
  requestDuration: Histogram<'route'>;
  dependencyUp: Gauge<'dependency'>;
  instanceRestarts: Counter<'model' | 'version' | 'reason'>;
} {
  const m = createMetrics();
  const registers = [m.registry];
  const requestDuration =
    (m.registry.getSingleMetric(REQUEST_DURATION) as Histogram<'route'> | undefined) ??
    new Histogram({ name: REQUEST_DURATION, help: 'Request durations.', labelNames: ['route'], buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5], registers });
  const dependencyUp =
    (m.registry.getSingleMetric('sightline_dependency_up') as Gauge<'dependency'> | undefined) ??
    new Gauge({ name: 'sightline_dependency_up', help: 'Dependency reachable.', labelNames: ['dependency'], registers });
  const instanceRestarts =
    (m.registry.getSingleMetric('sightline_model_instance_restarts_total') as Counter<'model' | 'version' | 'reason'> | undefined) ??
    new Counter({ name: 'sightline_model_instance_restarts_total', help: 'Model instances replaced.', labelNames: ['model', 'version', 'reason'], registers });
  return { m, requestDuration, dependencyUp, instanceRestarts };
}

/** Blocks the event loop (the event-loop-lag rule watches real lag). */
function block(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy
  }
}

const FOR_MS = 1_000;
const WINDOW_MS = 10_000;

interface Scenario {
  /** Makes the condition hold (called before each of the two evaluations that go pending, then firing). */
  raise(): void | Promise<void>;
  /** Makes it go away (called once before the resolving evaluation, after the clock moved past the window). */
  clear(): void | Promise<void>;
  options?: Partial<AlertOptions>;
}

function scenarios(x: ReturnType<typeof metricsWithExtras>): Record<string, Scenario> {
  const { m, requestDuration, dependencyUp, instanceRestarts } = x;
  return {
    SightlineHighErrorRate: {
      raise: () => {
        m.requests.inc({ route: '/v1/detect', line: 'l1', status: '200' }, 10);
        m.requests.inc({ route: '/v1/detect', line: 'l1', status: '500' }, 3);
        m.requests.inc({ route: '/v1/detect', line: 'l2', status: '503' }, 2);
        // Probes and scrapes do not count, failing or not.
        m.requests.inc({ route: '/readyz', line: 'none', status: '503' }, 50);
        m.requests.inc({ route: '/metrics', line: 'none', status: '200' }, 500);
      },
      clear: () => m.requests.inc({ route: '/v1/detect', line: 'l1', status: '200' }, 100),
    },
    SightlineHighLatency: {
      raise: () => {
        for (let i = 0; i < 20; i++) requestDuration.observe({ route: '/v1/detect' }, 2);
        // Other routes do not count.
        for (let i = 0; i < 100; i++) requestDuration.observe({ route: '/v1/results' }, 0.001);
      },
      clear: () => {
        for (let i = 0; i < 20; i++) requestDuration.observe({ route: '/v1/detect' }, 0.02);
      },
    },
    SightlineQueueBacklog: {
      raise: () => m.queueDepth.set({ queue: 'jobs' }, 5000),
      clear: () => m.queueDepth.set({ queue: 'jobs' }, 3),
      options: { queueBacklog: 1000 },
    },
    SightlineDeadLetters: {
      raise: () => m.jobs.inc({ state: 'dead' }),
      clear: () => m.jobs.inc({ state: 'done' }, 5),
    },
    SightlineModelNotReady: {
      raise: () => {
        m.modelReady.set({ model: 'defects', version: '1' }, 0);
        m.modelReady.set({ model: 'other', version: '2' }, 1);
      },
      clear: () => m.modelReady.set({ model: 'defects', version: '1' }, 1),
    },
    SightlineInferenceStalled: {
      // The watchdog replaced a stuck instance (src/inference/watchdog.ts); any model counts.
      raise: () => instanceRestarts.inc({ model: 'defects', version: '1', reason: 'stalled' }),
      clear: () => undefined,
    },
    SightlineImageQualityDrift: {
      // Line l2's frames leave the image-quality envelope (6 of 20 check, 30 %); l1 is fine and
      // l3 has too few results in the window to be judged, however many are check.
      raise: () => {
        m.verdicts.inc({ line: 'l1', verdict: 'ok' }, 50);
        m.verdicts.inc({ line: 'l2', verdict: 'ok' }, 12);
        m.verdicts.inc({ line: 'l2', verdict: 'ng' }, 2);
        m.verdicts.inc({ line: 'l2', verdict: 'check' }, 6);
        m.verdicts.inc({ line: 'l3', verdict: 'check' }, 2);
      },
      clear: () => m.verdicts.inc({ line: 'l2', verdict: 'ok' }, 100),
    },
    SightlineDependencyDown: {
      raise: () => {
        dependencyUp.set({ dependency: 'store' }, 0);
        dependencyUp.set({ dependency: 'queue' }, 1);
      },
      clear: () => dependencyUp.set({ dependency: 'store' }, 1),
    },
    SightlineConnectionsNearLimit: {
      raise: () => {
        m.connections.set({ transport: 'websocket', client_kind: 'camera' }, 7);
        m.connections.set({ transport: 'websocket', client_kind: 'dashboard' }, 3);
      },
      clear: () => m.connections.set({ transport: 'websocket', client_kind: 'camera' }, 1),
      options: { maxConnections: 10, connectionsRatio: 0.9 },
    },
    SightlineRequestsRejected: {
      raise: () => m.rejected.inc({ reason: 'queue_full' }, 50),
      clear: () => undefined,
    },
    SightlineEventLoopLag: {
      // Real lag: prom-client's monitor resets at every read, so the lag is the last interval's.
      raise: async () => {
        // The monitor skips its first tick after a reset (each read resets it): let one pass.
        await new Promise((r) => setTimeout(r, 30));
        block(400);
        // The monitor records the delay when its timer runs after the block.
        await new Promise((r) => setTimeout(r, 40));
      },
      clear: () => new Promise((r) => setTimeout(r, 60)),
      options: { eventLoopLagMs: 150 },
    },
    SightlineCameraOffline: {
      raise: () => {
        m.cameraState.set({ line: 'line-3', camera: 'cam-2', state: 'online' }, 0);
        m.cameraState.set({ line: 'line-3', camera: 'cam-2', state: 'offline' }, 1);
      },
      clear: () => {
        m.cameraState.set({ line: 'line-3', camera: 'cam-2', state: 'offline' }, 0);
        m.cameraState.set({ line: 'line-3', camera: 'cam-2', state: 'online' }, 1);
      },
    },
    SightlineSnapshotsFailing: {
      // Registered by the snapshot service, not createMetrics.
      raise: () => snapshotMetrics(m.registry).skipped.inc({ reason: 'disk_full' }, 3),
      clear: () => undefined,
    },
    SightlineOutputDisconnected: {
      // Registered by the outputs, not createMetrics; an output's /readyz check going down with it must not raise SightlineDependencyDown.
      raise: () => {
        outputMetrics(m.registry).connected.set({ output: 'mqtt' }, 0);
        outputMetrics(m.registry).connected.set({ output: 'webhook' }, 1);
        dependencyUp.set({ dependency: 'output:mqtt' }, 0);
      },
      clear: () => {
        outputMetrics(m.registry).connected.set({ output: 'mqtt' }, 1);
        dependencyUp.set({ dependency: 'output:mqtt' }, 1);
      },
    },
    SightlineSourceDown: {
      // A pulled source that cannot be read; its /readyz check (source:*) going down with it must not raise SightlineDependencyDown.
      raise: () => {
        m.sourceUp.set({ source: 'cam-1' }, 0);
        m.sourceUp.set({ source: 'cam-2' }, 1);
        dependencyUp.set({ dependency: 'source:cam-1' }, 0);
      },
      clear: () => {
        m.sourceUp.set({ source: 'cam-1' }, 1);
        dependencyUp.set({ dependency: 'source:cam-1' }, 1);
      },
    },
    SightlineOutputDropping: {
      raise: () => outputMetrics(m.registry).dropped.inc({ output: 'webhook', reason: 'outbox_full' }, 7),
      clear: () => undefined,
    },
  };
}

// ---------------------------------------------------------------- every rule

test('every alert rule goes pending, fires after its for-duration and resolves; a webhook gets both notifications', async (t) => {
  const receiver = await new Receiver().start();
  t.after(() => receiver.close());
  const probe = metricsWithExtras();
  assert.deepEqual(Object.keys(scenarios(probe)).sort(), ALERT_RULES.map((r) => r.name).sort(), 'a scenario per rule');

  for (const rule of ALERT_RULES) {
    await t.test(rule.name, async () => {
      const x = metricsWithExtras();
      const scenario = scenarios(x)[rule.name]!;
      let now = 1_700_000_000_000;
      const before = receiver.bodies.length;
      const notifier = new WebhookNotifier({ urls: [receiver.url], backoffMs: 10, timeoutMs: 2000 });
      const engine = new AlertEngine({
        registry: x.m.registry,
        notifier,
        now: () => now,
        options: { forMs: FOR_MS, windowMs: WINDOW_MS, minRequests: 10, ...scenario.options },
        labels: { instance: 'test' },
      });
      const state = () => engine.list().find((a) => a.name === rule.name)!;
      const others = () => engine.list().filter((a) => a.name !== rule.name && a.state !== 'inactive');

      await engine.evaluate(); // baseline reading of the window rules
      assert.equal(state().state, 'inactive');
      assert.equal(state().since, null);

      await scenario.raise();
      now += 500;
      await engine.evaluate();
      assert.equal(state().state, 'pending', `${rule.name} pending: ${JSON.stringify(state())}`);
      assert.ok(state().value! > state().threshold);
      const pendingSince = state().since;

      await scenario.raise();
      now += FOR_MS;
      await engine.evaluate();
      const firing = state();
      assert.equal(firing.state, 'firing', `${rule.name} firing: ${JSON.stringify(firing)}`);
      assert.notEqual(firing.since, pendingSince);
      assert.deepEqual(others(), [], 'no other rule is active');
      const gauge = await x.m.registry.getSingleMetricAsString('sightline_alerts_firing');
      assert.match(gauge, new RegExp(`sightline_alerts_firing\\{alertname="${rule.name}",severity="${rule.severity}"\\} 1`));

      // Past the window, with the condition gone.
      now += WINDOW_MS + 1000;
      await scenario.clear();
      await engine.evaluate();
      assert.equal(state().state, 'inactive', `${rule.name} resolved: ${JSON.stringify(state())}`);
      assert.match(
        await x.m.registry.getSingleMetricAsString('sightline_alerts_firing'),
        new RegExp(`alertname="${rule.name}",severity="${rule.severity}"\\} 0`),
      );

      // The history has the three changes, newest first.
      assert.deepEqual(
        engine.history().map((c) => [c.name, c.from, c.to]),
        [
          [rule.name, 'firing', 'inactive'],
          [rule.name, 'pending', 'firing'],
          [rule.name, 'inactive', 'pending'],
        ],
      );

      await receiver.waitFor(before + 2);
      await engine.stop();
      const [fired, resolved] = receiver.bodies.slice(before);
      assert.equal(receiver.bodies.length, before + 2, 'exactly two notifications');
      for (const [body, status] of [
        [fired!, 'firing'],
        [resolved!, 'resolved'],
      ] as const) {
        assert.equal(body.status, status);
        assert.equal(body.version, '4');
        assert.equal(body.alerts.length, 1);
        const alert = body.alerts[0]!;
        assert.equal(alert.status, status);
        assert.deepEqual(alert.labels, { alertname: rule.name, severity: rule.severity, service: 'sightline', instance: 'test' });
        assert.equal(alert.annotations.summary, rule.summary);
        assert.ok(alert.annotations.description!.length > 10);
        assert.equal(alert.startsAt, firing.since);
      }
      assert.equal(fired!.alerts[0]!.endsAt, '0001-01-01T00:00:00Z');
      assert.equal(resolved!.alerts[0]!.endsAt, new Date(now).toISOString());
      assert.equal(fired!.alerts[0]!.fingerprint, resolved!.alerts[0]!.fingerprint);
    });
  }
});

test('a condition that does not hold for the for-duration goes back to inactive without a notification', async (t) => {
  const receiver = await new Receiver().start();
  t.after(() => receiver.close());
  const { m } = metricsWithExtras();
  let now = 0;
  const engine = new AlertEngine({ registry: m.registry, now: () => now, options: { forMs: 5000 }, notifier: new WebhookNotifier({ urls: [receiver.url] }) });
  const backlog = () => engine.list().find((a) => a.name === 'SightlineQueueBacklog')!;
  m.queueDepth.set({ queue: 'jobs' }, 2000);
  await engine.evaluate();
  assert.equal(backlog().state, 'pending');
  now += 4000;
  m.queueDepth.set({ queue: 'jobs' }, 10);
  await engine.evaluate();
  assert.equal(backlog().state, 'inactive');
  assert.equal(backlog().value, 10);
  await engine.stop();
  assert.equal(receiver.hits, 0);
});

test('error rate is not judged below the minimum request count; p95 follows histogram_quantile', async () => {
  const { m } = metricsWithExtras();
  let now = 0;
  const engine = new AlertEngine({ registry: m.registry, now: () => now, options: { forMs: 0, minRequests: 10 } });
  const rate = () => engine.list().find((a) => a.name === 'SightlineHighErrorRate')!;
  await engine.evaluate();
  m.requests.inc({ route: '/v1/detect', line: 'a', status: '500' }, 9);
  now += 1000;
  await engine.evaluate();
  assert.equal(rate().value, null);
  assert.equal(rate().state, 'inactive');
  m.requests.inc({ route: '/v1/detect', line: 'a', status: '404' }, 1);
  now += 1000;
  await engine.evaluate();
  assert.equal(rate().value, 0.9);
  assert.equal(rate().state, 'firing', 'forMs 0 fires at once');

  // Prometheus: histogram_quantile(0.95, ...) of 10 in (0.1, 0.5] and 10 in (0.5, 1] → 0.5 + 0.5 × (19 − 10) / 10 = 0.95.
  assert.equal(histogramQuantile(0.95, [0.1, 0.5, 1, Infinity], [0, 10, 20, 20]), 0.95);
  assert.equal(histogramQuantile(0.5, [1, 2, Infinity], [0, 0, 4]), 2, 'rank in +Inf: highest finite bound');
  assert.equal(histogramQuantile(0.95, [1, Infinity], [0, 0]), null, 'no observations');
  assert.equal(histogramQuantile(0.5, [2, Infinity], [4, 4]), 1, 'interpolates from 0 in the first bucket');
  assert.equal(promDuration(300_000), '5m');
  assert.equal(promDuration(90_500), '1m30s500ms');
  assert.equal(promDuration(0), '0s');
  const view = MetricsView.of({
    x: [
      { labels: { a: '1' }, value: 2 },
      { labels: { a: '2' }, value: 3 },
    ],
  });
  assert.equal(view.sum('x'), 5);
  assert.equal(view.max('x', { a: '1' }), 2);
  assert.equal(view.max('y'), null);
  await engine.stop();
});

// ---------------------------------------------------------------- webhooks

const firingAlert = (name = 'SightlineQueueBacklog') => ({
  status: 'firing' as const,
  labels: { alertname: name, severity: 'warning' },
  annotations: { summary: 's', description: 'd' },
  startsAt: new Date(0).toISOString(),
  endsAt: '0001-01-01T00:00:00Z',
});

test('webhook: a 500 is retried with backoff and the next 200 delivers; order is kept per URL', async (t) => {
  const receiver = await new Receiver().start();
  t.after(() => receiver.close());
  const arrivals: number[] = [];
  receiver.answer = (hit) => {
    arrivals.push(performance.now());
    return hit === 1 ? 500 : 200;
  };
  const warnings: object[] = [];
  const logger = { info: () => undefined, warn: (o: object) => warnings.push(o), error: () => undefined };
  const notifier = new WebhookNotifier({ urls: [receiver.url], backoffMs: 100, logger });
  notifier.send(firingAlert());
  notifier.send({ ...firingAlert(), status: 'resolved', endsAt: new Date(1000).toISOString() });
  await receiver.waitFor(2);
  await notifier.close();
  assert.equal(receiver.hits, 3, 'one failed attempt, then both delivered');
  assert.deepEqual(
    receiver.bodies.map((b) => b.status),
    ['firing', 'resolved'],
    'the resolved notification waited for the firing one',
  );
  assert.ok(arrivals[1]! - arrivals[0]! >= 70, `backoff waited ${arrivals[1]! - arrivals[0]!} ms`);
  assert.ok(warnings.some((w) => (w as { event?: string }).event === 'alert_webhook_retry'));
});

test('webhook: a receiver that never answers times out, attempts are bounded, evaluation is never blocked', async (t) => {
  const receiver = await new Receiver().start();
  t.after(() => receiver.close());
  receiver.answer = () => 'hang';
  const errors: object[] = [];
  const logger = { info: () => undefined, warn: () => undefined, error: (o: object) => errors.push(o) };
  const { m } = metricsWithExtras();
  const notifier = new WebhookNotifier({ urls: [receiver.url], attempts: 3, backoffMs: 10, timeoutMs: 100, logger });
  let now = 0;
  const engine = new AlertEngine({ registry: m.registry, now: () => now, notifier, options: { forMs: 0 } });
  m.queueDepth.set({ queue: 'jobs' }, 5000);
  const started = performance.now();
  await engine.evaluate();
  now += 1000;
  m.queueDepth.set({ queue: 'jobs' }, 0);
  await engine.evaluate();
  assert.ok(performance.now() - started < 100, 'evaluations did not wait for the webhook');
  assert.deepEqual(
    engine.list().filter((a) => a.state !== 'inactive'),
    [],
  );
  const until = Date.now() + 5000;
  while (errors.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  await engine.stop();
  assert.equal(receiver.hits, 6, 'three attempts for each of the two notifications');
  assert.equal(errors.length, 2);
  assert.match(JSON.stringify(errors[0]), /alert_webhook_failed.*timed out/);
});

test('webhook: Retry-After is honoured and every configured URL gets the notification', async (t) => {
  const a = await new Receiver().start();
  const b = await new Receiver().start();
  t.after(async () => {
    await a.close();
    await b.close();
  });
  const times: number[] = [];
  // 429 with Retry-After: 0.3 s wins over the 10 ms backoff.
  b.answer = (hit) => {
    times.push(performance.now());
    return hit === 1 ? { status: 429, headers: { 'retry-after': '0.3' } } : 200;
  };
  const notifier = new WebhookNotifier({ urls: [a.url, b.url], backoffMs: 10 });
  notifier.send(firingAlert());
  await a.waitFor(1);
  await b.waitFor(1);
  await notifier.close();
  assert.equal(b.hits, 2);
  assert.ok(times[1]! - times[0]! >= 250, `waited ${times[1]! - times[0]!} ms`);
});

// ---------------------------------------------------------------- engine on timers, config, API

test('started engine evaluates on its interval with real time: fires and resolves', async (t) => {
  const receiver = await new Receiver().start();
  t.after(() => receiver.close());
  const { m } = metricsWithExtras();
  const engine = createAlertEngine({
    config: { alert_webhooks: receiver.url, alert_eval_interval_ms: 20, alert_for_ms: 60, alert_queue_backlog: 10 },
    registry: m.registry,
    webhook: { backoffMs: 10 },
  });
  t.after(() => engine.stop());
  m.queueDepth.set({ queue: 'jobs' }, 11);
  await receiver.waitFor(1);
  assert.equal(receiver.bodies[0]!.status, 'firing');
  assert.equal(engine.list().find((a) => a.name === 'SightlineQueueBacklog')!.state, 'firing');
  m.queueDepth.set({ queue: 'jobs' }, 0);
  await receiver.waitFor(2);
  assert.equal(receiver.bodies[1]!.status, 'resolved');
  assert.equal(receiver.bodies[1]!.alerts[0]!.labels.alertname, 'SightlineQueueBacklog');
});

test('config keys map to options; unknown or missing keys keep the defaults', () => {
  const o = alertOptionsFromConfig({ alert_error_rate: 0.2, alert_for_ms: 10, max_connections: 50, alert_queue_backlog: 'x', port: 1 });
  assert.equal(o.errorRate, 0.2);
  assert.equal(o.forMs, 10);
  assert.equal(o.maxConnections, 50);
  assert.equal(o.queueBacklog, 1000);
  assert.equal(o.p95LatencyMs, 1000);
  assert.deepEqual(alertWebhooksFromConfig({ alert_webhooks: ' http://a/x, http://b/y  http://c ' }), ['http://a/x', 'http://b/y', 'http://c']);
  assert.deepEqual(alertWebhooksFromConfig({}), []);
  assert.throws(() => new WebhookNotifier({ urls: ['not a url'] }));
});

test('GET /v1/alerts lists every rule with state, value and threshold; ?state filters', async () => {
  const { m } = metricsWithExtras();
  let now = Date.parse('2030-01-01T00:00:00Z');
  const engine = new AlertEngine({ registry: m.registry, now: () => now, options: { forMs: 1000 } });
  const app = Fastify();
  await app.register(alertRoutes, { engine });
  try {
    const empty = (await app.inject({ method: 'GET', url: '/v1/alerts' })).json() as { alerts: Record<string, unknown>[] };
    assert.equal(empty.alerts.length, ALERT_RULES.length);
    assert.deepEqual(
      Object.keys(empty.alerts[0]!).sort(),
      ['description', 'evaluated_at', 'for_ms', 'name', 'severity', 'since', 'state', 'summary', 'threshold', 'unit', 'value'].sort(),
    );
    m.queueDepth.set({ queue: 'jobs' }, 1500);
    await engine.evaluate();
    now += 1000;
    await engine.evaluate();
    const res = await app.inject({ method: 'GET', url: '/v1/alerts?state=firing' });
    assert.equal(res.statusCode, 200);
    const body = res.json() as { alerts: Record<string, unknown>[]; eval_interval_ms: number };
    assert.deepEqual(body.alerts, [
      {
        name: 'SightlineQueueBacklog',
        severity: 'warning',
        state: 'firing',
        since: '2030-01-01T00:00:01.000Z',
        value: 1500,
        threshold: 1000,
        unit: 'count',
        for_ms: 1000,
        summary: 'Jobs pile up in the job queue',
        description: 'Jobs waiting in the job queue: 1500 (threshold 1000); the workers do not keep up.',
        evaluated_at: '2030-01-01T00:00:01.000Z',
      },
    ]);
    assert.equal(body.eval_interval_ms, 5000);
    assert.equal((await app.inject({ method: 'GET', url: '/v1/alerts?state=bogus' })).statusCode, 400);
  } finally {
    await app.close();
    await engine.stop();
  }
});

test('the app serves GET /v1/alerts from an engine on its own registry, started with it and stopped on close', async () => {
  const app = await startApp({ models_dir: 'models' }, { wait: false });
  try {
    const body = (await app.inject({ method: 'GET', url: '/v1/alerts' })).json() as { alerts: { name: string; evaluated_at: string | null }[] };
    assert.deepEqual(
      body.alerts.map((a) => a.name),
      ALERT_RULES.map((r) => r.name),
    );
    // The first evaluation runs at start.
    const until = Date.now() + 3000;
    let evaluated = false;
    while (!evaluated && Date.now() < until) {
      const again = (await app.inject({ method: 'GET', url: '/v1/alerts' })).json() as typeof body;
      evaluated = again.alerts.every((a) => a.evaluated_at !== null);
      if (!evaluated) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(evaluated);
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /sightline_alerts_firing\{alertname="SightlineHighErrorRate",severity="critical"\} 0/);
  } finally {
    await app.close();
  }
});

test('alert history keeps the last alert_history_size changes, newest first, and is served at GET /v1/alerts/history', async (t) => {
  const m = createMetrics();
  let now = 1_700_000_000_000;
  const engine = new AlertEngine({ registry: m.registry, options: { forMs: 0, queueBacklog: 10 }, historySize: 4, now: () => now });
  t.after(() => engine.stop());
  for (let i = 0; i < 3; i++) {
    m.queueDepth.set({ queue: 'jobs' }, 50);
    now += 1000;
    await engine.evaluate(); // inactive → pending → firing (for 0)
    await engine.evaluate();
    m.queueDepth.set({ queue: 'jobs' }, 0);
    now += 1000;
    await engine.evaluate(); // firing → inactive
  }
  const history = engine.history();
  assert.equal(history.length, 4, 'at most historySize changes are kept');
  assert.deepEqual(
    history.map((c) => c.to),
    ['inactive', 'firing', 'pending', 'inactive'],
  );
  assert.ok(Date.parse(history[0]!.at) > Date.parse(history[3]!.at), 'newest first');
  assert.equal(engine.history(2).length, 2);

  const app = Fastify();
  await app.register(alertRoutes, { engine });
  t.after(() => app.close());
  const res = await app.inject({ url: '/v1/alerts/history?limit=1' });
  assert.equal(res.statusCode, 200);
  const body = res.json() as { changes: { name: string; to: string }[] };
  assert.deepEqual(
    body.changes.map((c) => [c.name, c.to]),
    [['SightlineQueueBacklog', 'inactive']],
  );
  assert.equal((await app.inject({ url: '/v1/alerts/history?limit=0' })).statusCode, 400);
});
