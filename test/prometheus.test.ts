import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { createMetrics } from '../src/metrics/metrics.js';
import { ALERT_RULES, DEFAULT_ALERT_OPTIONS, promDuration } from '../src/alerts/index.js';
import { PROMETHEUS_RULES_PATH, renderPrometheusRules } from '../src/alerts/prometheus.js';
import { startApp, tempDir } from './helpers/fixtures.js';
import { requireOrSkip } from './helpers/requirements.js';

const PROMTOOL = 'promtool';
const onPath = (bin: string) => spawnSync(bin, ['--version'], { encoding: 'utf8' }).status === 0;
const hasPromtool = onPath(PROMTOOL);
const hasPrometheus = onPath('prometheus');
const PROMTOOL_WHAT = 'promtool (Debian package prometheus)';

const DASHBOARD = 'deploy/grafana/dashboards/sightline.json';

/**
 * Metrics the rules and the dashboard may use beyond createMetrics(): those
 * other parts of the server register (the alert engine's own gauge, the
 * request-duration histogram, dependency and GPU gauges), and Prometheus' own.
 */
const ELSEWHERE = new Set([
  'sightline_alerts_firing',
  'sightline_request_duration_seconds',
  'sightline_dependency_up',
  'sightline_gpu_utilization_ratio',
  'sightline_gpu_memory_used_bytes',
  'sightline_gpu_temperature_celsius',
  'sightline_gpu_power_watts',
  // The snapshot service's (src/snapshots/metrics.ts).
  'sightline_snapshots_skipped_total',
  // The factory outputs' (src/outputs/metrics.ts).
  'sightline_output_connected',
  'sightline_output_dropped_total',
  'ALERTS',
]);

/** Metric names (histogram suffixes stripped) in a PromQL expression. */
function metricNames(expr: string, histograms: Set<string>): string[] {
  const names = expr.match(/\b(?:sightline|process|nodejs)_[a-z0-9_]+\b|\bALERTS\b/g) ?? [];
  return names.map((n) => {
    const base = n.replace(/_(bucket|sum|count)$/, '');
    return base !== n && histograms.has(base) ? base : n;
  });
}

async function knownMetrics(): Promise<{ known: Set<string>; histograms: Set<string> }> {
  const { registry } = createMetrics();
  const metrics = await registry.getMetricsAsJSON();
  const histograms = new Set(metrics.filter((m) => String(m.type) === 'histogram').map((m) => m.name));
  histograms.add('sightline_request_duration_seconds');
  return { known: new Set([...metrics.map((m) => m.name), ...ELSEWHERE]), histograms };
}

interface Panel {
  type: string;
  title: string;
  panels?: Panel[];
  targets?: { expr: string }[];
}

function dashboardExprs(): { title: string; expr: string }[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[] };
  const flat = (ps: Panel[]): Panel[] => ps.flatMap((p) => [p, ...flat(p.panels ?? [])]);
  return flat(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })));
}

function run(cmd: string, args: string[], input?: string) {
  return spawnSync(cmd, args, { encoding: 'utf8', ...(input === undefined ? {} : { input }) });
}

// ---------------------------------------------------------------- one source of truth

test('the Prometheus rules file is generated from the in-process rules and up to date', () => {
  const committed = readFileSync(PROMETHEUS_RULES_PATH, 'utf8');
  assert.equal(committed, renderPrometheusRules(), `${PROMETHEUS_RULES_PATH} is stale: run node --import tsx scripts/gen-prometheus-rules.ts`);
  const doc = parse(committed) as { groups: { rules: { alert: string; for: string; labels: { severity: string } }[] }[] };
  const rules = doc.groups.flatMap((g) => g.rules);
  assert.deepEqual(
    rules.map((r) => [r.alert, r.labels.severity, r.for]),
    ALERT_RULES.map((r) => [r.name, r.severity, promDuration(DEFAULT_ALERT_OPTIONS.forMs)]),
  );
  // The unit tests of the rules cover every rule, firing and resolved.
  const unit = parse(readFileSync('deploy/prometheus/tests/sightline.rules.test.yml', 'utf8')) as {
    tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
  };
  const cases = unit.tests.flatMap((t) => t.alert_rule_test);
  for (const rule of ALERT_RULES) {
    assert.ok(
      cases.some((c) => c.alertname === rule.name && c.exp_alerts.length > 0),
      `${rule.name} fires in the promtool tests`,
    );
    assert.ok(
      cases.some((c) => c.alertname === rule.name && c.exp_alerts.length === 0),
      `${rule.name} resolves in the promtool tests`,
    );
  }
});

test('the rules and the dashboard only use metrics Sightline exports', async () => {
  const { known, histograms } = await knownMetrics();
  const rules = parse(readFileSync(PROMETHEUS_RULES_PATH, 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] };
  const used: [string, string][] = [
    ...rules.groups.flatMap((g) => g.rules.map((r) => [r.alert, r.expr] as [string, string])),
    ...dashboardExprs().map(({ title, expr }) => [title, expr] as [string, string]),
  ];
  for (const [where, expr] of used) {
    for (const name of metricNames(expr, histograms)) assert.ok(known.has(name), `${where}: unknown metric ${name} in ${expr}`);
  }
  // Every metric the DESIGN names is on the dashboard.
  const onDashboard = new Set(dashboardExprs().flatMap(({ expr }) => metricNames(expr, histograms)));
  for (const name of [
    'sightline_requests_total',
    'sightline_stage_duration_seconds',
    'sightline_batch_size',
    'sightline_queue_depth',
    'sightline_jobs_total',
    'sightline_detections_total',
    'sightline_verdicts_total',
    'sightline_connections',
    'sightline_rejected_total',
    'sightline_model_ready',
    'process_cpu_seconds_total',
    'process_resident_memory_bytes',
    'sightline_gpu_utilization_ratio',
    'sightline_gpu_memory_used_bytes',
    'sightline_gpu_temperature_celsius',
    'sightline_gpu_power_watts',
  ]) {
    assert.ok(onDashboard.has(name), `${name} is on the dashboard`);
  }
});

test('the Grafana dashboard and provisioning files parse and point at each other', () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { uid: string; title: string; panels: Panel[]; templating: { list: { name: string }[] } };
  assert.equal(dashboard.uid, 'sightline-overview');
  const ids = new Set<number>();
  for (const p of dashboard.panels as (Panel & { id: number; gridPos: { x: number; w: number } })[]) {
    assert.ok(!ids.has(p.id), `panel id ${p.id} unique`);
    ids.add(p.id);
    assert.ok(p.gridPos.x + p.gridPos.w <= 24, `${p.title} fits the grid`);
  }
  assert.deepEqual(
    dashboard.templating.list.map((v) => v.name),
    ['datasource', 'instance', 'line'],
  );
  const ds = parse(readFileSync('deploy/grafana/provisioning/datasources/prometheus.yml', 'utf8')) as {
    datasources: { type: string; url: string; uid: string }[];
  };
  assert.equal(ds.datasources[0]!.type, 'prometheus');
  assert.equal(ds.datasources[0]!.url, 'http://prometheus:9090');
  const providers = parse(readFileSync('deploy/grafana/provisioning/dashboards/sightline.yml', 'utf8')) as {
    providers: { type: string; options: { path: string } }[];
  };
  assert.equal(providers.providers[0]!.type, 'file');
  const prom = parse(readFileSync('deploy/prometheus/prometheus.yml', 'utf8')) as {
    scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    rule_files: string[];
  };
  assert.deepEqual(prom.scrape_configs[0]!.static_configs[0]!.targets, ['sightline:8080']);
  assert.deepEqual(prom.rule_files, ['rules/*.rules.yml']);
});

// ---------------------------------------------------------------- promtool

test('promtool check rules, check config and the rules unit tests pass', (t) => {
  if (!requireOrSkip(t, hasPromtool, PROMTOOL_WHAT)) return;
  const ruleFiles = readdirSync('deploy/prometheus/rules')
    .filter((f) => f.endsWith('.yml'))
    .map((f) => join('deploy/prometheus/rules', f));
  const rules = run(PROMTOOL, ['check', 'rules', ...ruleFiles]);
  assert.equal(rules.status, 0, rules.stdout + rules.stderr);
  assert.match(rules.stdout, new RegExp(`SUCCESS: ${ALERT_RULES.length} rules found`));
  const config = run(PROMTOOL, ['check', 'config', 'deploy/prometheus/prometheus.yml']);
  assert.equal(config.status, 0, config.stdout + config.stderr);
  assert.match(config.stdout, /SUCCESS: 1 rule files found/);
  const unit = run(PROMTOOL, ['test', 'rules', 'deploy/prometheus/tests/sightline.rules.test.yml']);
  assert.equal(unit.status, 0, unit.stdout + unit.stderr);
});

test('every dashboard query is valid PromQL (checked by promtool as recording rules)', (t) => {
  if (!requireOrSkip(t, hasPromtool, PROMTOOL_WHAT)) return;
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const exprs = dashboardExprs();
  assert.ok(exprs.length >= 30, `${exprs.length} queries`);
  const rules = exprs.map(({ expr }, i) => ({
    record: `dashboard:query_${i}`,
    expr: expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*').replaceAll('$line', '.*'),
  }));
  const file = join(tmp.dir, 'dashboard.rules.yml');
  writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules }] }));
  const res = run(PROMTOOL, ['check', 'rules', file]);
  assert.equal(res.status, 0, res.stdout + res.stderr);
});

test("a running Sightline's /metrics after traffic passes promtool check metrics, and Prometheus scrapes it and evaluates the rules", async (t) => {
  if (!requireOrSkip(t, hasPromtool, PROMTOOL_WHAT)) return;
  const app = await startApp({ models_dir: 'models' });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => app.close());
  const port = (app.server.address() as { port: number }).port;
  const base = `http://127.0.0.1:${port}`;
  for (const sample of ['samples/ng-01.jpg', 'samples/ok-01.jpg']) {
    const res = await fetch(`${base}/v1/detect?line=line-1`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: readFileSync(sample) });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  }
  const bad = await fetch(`${base}/v1/detect`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: 'not an image' });
  assert.equal(bad.status, 400);
  const exposition = await (await fetch(`${base}/metrics`)).text();
  for (const name of ['sightline_requests_total', 'sightline_stage_duration_seconds_bucket', 'sightline_verdicts_total', 'sightline_alerts_firing']) {
    assert.ok(exposition.includes(name), `${name} exported`);
  }

  assertDocumentedMetrics(exposition);

  // The whole exposition, prom-client's default metrics included: nothing filtered out.
  const check = run(PROMTOOL, ['check', 'metrics'], exposition);
  assert.equal(check.status, 0, `promtool check metrics exited ${check.status} (1: parse error, 3: lint findings): ${check.stdout}${check.stderr}`);
  assert.equal(`${check.stdout}${check.stderr}`.trim(), '', 'promtool check metrics findings');
  // The active handles/requests/resources stay available, by type, under names without _total.
  for (const name of ['nodejs_active_handles', 'nodejs_active_requests', 'nodejs_active_resources']) {
    assert.match(exposition, new RegExp(`^# TYPE ${name} gauge$`, 'm'), `${name} exported`);
    assert.doesNotMatch(exposition, new RegExp(`^${name}_total\\b`, 'm'), `${name}_total is not exported`);
  }

  if (!requireOrSkip(t, hasPrometheus, 'prometheus (Debian package prometheus)')) return;
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const promPort = await freePort();
  const config = {
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: [resolve(PROMETHEUS_RULES_PATH)],
    scrape_configs: [{ job_name: 'sightline', static_configs: [{ targets: [`127.0.0.1:${port}`] }] }],
  };
  writeFileSync(join(tmp.dir, 'prometheus.yml'), JSON.stringify(config));
  const prometheus = spawn(
    'prometheus',
    [`--config.file=${join(tmp.dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(tmp.dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  prometheus.stderr.on('data', (c: Buffer) => {
    log = (log + c.toString()).slice(-4000);
  });
  t.after(() => {
    prometheus.kill('SIGTERM');
  });
  const api = `http://127.0.0.1:${promPort}/api/v1`;
  const get = async <T>(path: string): Promise<T | undefined> => {
    try {
      const res = await fetch(`${api}${path}`);
      return res.ok ? ((await res.json()) as { data: T }).data : undefined;
    } catch {
      return undefined;
    }
  };
  type Rule = { name: string; health: string; lastError?: string; lastEvaluation: string };
  const until = Date.now() + 30_000;
  let done = false;
  let state = '';
  while (!done) {
    assert.ok(Date.now() < until, `Prometheus did not scrape and evaluate in time: ${state}\n${log}`);
    assert.equal(prometheus.exitCode, null, `prometheus exited: ${log}`);
    await new Promise((r) => setTimeout(r, 250));
    const targets = await get<{ activeTargets: { health: string; lastError: string }[] }>('/targets');
    const rules = await get<{ groups: { rules: Rule[] }[] }>('/rules');
    const query = await get<{ result: { metric: Record<string, string> }[] }>(`/query?query=${encodeURIComponent('sum by (line) (sightline_verdicts_total)')}`);
    const flat = rules?.groups.flatMap((g) => g.rules) ?? [];
    state = JSON.stringify({ targets: targets?.activeTargets, rules: flat.map((r) => [r.name, r.health, r.lastError]), query: query?.result });
    const up = targets?.activeTargets.length === 1 && targets.activeTargets[0]!.health === 'up';
    const evaluated = flat.length === ALERT_RULES.length && flat.every((r) => r.health === 'ok' && !r.lastError && !r.lastEvaluation.startsWith('0001'));
    done = up && evaluated && (query?.result.some((r) => r.metric.line === 'line-1') ?? false);
  }
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/**
 * Every metric docs/metrics.md names (`sightline_x{a,b}`, or a table row with the labels
 * in its second column) is exported with exactly those labels, and every sightline_*
 * metric exported is on that page; the GPU series are absent on a machine without one.
 */
function assertDocumentedMetrics(exposition: string): void {
  const section = readFileSync(new URL('../docs/metrics.md', import.meta.url), 'utf8');
  const documented = new Map<string, string[]>();
  for (const m of section.matchAll(/`(sightline_[a-z0-9_]+)(?:\{([a-z_,]*)\})?`/g)) {
    if (!documented.has(m[1]!) || m[2]) documented.set(m[1]!, m[2] ? m[2].split(',') : []);
  }
  // The table rows name labels in their own column: read them from there.
  for (const row of section.matchAll(/^\| `(sightline_[a-z0-9_]+)` \| ([^|]*) \|/gm)) {
    documented.set(
      row[1]!,
      [...row[2]!.matchAll(/`([a-z_]+)`/g)].map((l) => l[1]!),
    );
  }
  const undocumented = [...exposition.matchAll(/^# TYPE (sightline_[a-z0-9_]+) /gm)].map((m) => m[1]!).filter((name) => !documented.has(name));
  assert.deepEqual(undocumented, [], 'exported metrics missing from docs/metrics.md');
  assert.ok(documented.size >= 30, `${documented.size} metrics documented`);
  const samples = exposition.split('\n').filter((l) => l && !l.startsWith('#'));
  for (const [name, labels] of documented) {
    const own = samples.filter((l) => /^([a-z0-9_]+)/.exec(l)![1]!.replace(/_(bucket|sum|count)$/, '') === name || /^([a-z0-9_]+)/.exec(l)![1] === name);
    if (name.startsWith('sightline_gpu_')) {
      assert.deepEqual(own, [], `${name} is absent without a GPU`);
      continue;
    }
    if (name === 'sightline_rate_limit_backend_errors_total') {
      assert.deepEqual(own, [], `${name} is absent without rate_limit_url`);
      continue;
    }
    assert.match(exposition, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exported`);
    for (const line of own) {
      const names = [...(line.match(/\{(.*)\}/)?.[1] ?? '').matchAll(/([a-z_]+)="/g)].map((l) => l[1]!).filter((l) => l !== 'le' && l !== 'quantile');
      assert.deepEqual(names.sort(), [...labels].sort(), `labels of ${line}`);
    }
  }
}
