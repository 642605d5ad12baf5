import { type MetricsView, histogramQuantile } from './metrics-view.js';

export type Severity = 'warning' | 'critical';
/** How a rule's value and threshold read: shown in the API and in notifications. */
export type Unit = 'ratio' | 'seconds' | 'count' | 'per_second';

/** Thresholds and timings of the built-in rules; every field has a default (DEFAULT_ALERT_OPTIONS). */
export interface AlertOptions {
  /** How often the rules are evaluated, in ms. */
  evalIntervalMs: number;
  /** How long a rule's condition must hold before the alert fires (pending until then), in ms. */
  forMs: number;
  /** Window of the rate, increase and percentile rules, in ms (PromQL's range, `[5m]`). */
  windowMs: number;
  /** Share of requests answered 5xx in the window above which SightlineHighErrorRate fires. */
  errorRate: number;
  /** Requests in the window below which the error rate is not judged. */
  minRequests: number;
  /** p95 of /v1/detect request durations in the window above which SightlineHighLatency fires, in ms. */
  p95LatencyMs: number;
  /** Jobs waiting in the job queue above which SightlineQueueBacklog fires. */
  queueBacklog: number;
  /** Open connections as a share of maxConnections above which SightlineConnectionsNearLimit fires. */
  connectionsRatio: number;
  /** The server's connection limit (config max_connections; Prometheus reads it from sightline_connections_limit). */
  maxConnections: number;
  /** Admission-control rejections per second in the window above which SightlineRequestsRejected fires. */
  rejectedPerSecond: number;
  /** Event-loop lag (p99) above which SightlineEventLoopLag fires, in ms. */
  eventLoopLagMs: number;
  /** Share of a line's verdicts in the window that are `check` above which SightlineImageQualityDrift fires (from minRequests results). */
  qualityCheckRatio: number;
}

export const DEFAULT_ALERT_OPTIONS: Readonly<AlertOptions> = Object.freeze({
  evalIntervalMs: 5_000,
  forMs: 60_000,
  windowMs: 300_000,
  errorRate: 0.05,
  minRequests: 10,
  p95LatencyMs: 1_000,
  queueBacklog: 1_000,
  connectionsRatio: 0.9,
  maxConnections: 200,
  rejectedPerSecond: 1,
  eventLoopLagMs: 500,
  qualityCheckRatio: 0.2,
});

export interface Evaluation {
  /** The rule's value now; null when there is no data (the condition is then false). */
  value: number | null;
  /** What the value is made of (e.g. which models are not ready), appended to the description. */
  detail?: string;
}

interface RuleBase {
  /** Alert name, the same in Prometheus (`alertname`). */
  name: string;
  severity: Severity;
  unit: Unit;
  summary: string;
  /** Description with the value and the threshold already formatted (in-process) or as templates (Prometheus). */
  describe(value: string, threshold: string): string;
  /** The metrics the rule reads. */
  metrics: readonly string[];
  /** The alert fires while value > threshold (for forMs). */
  threshold(options: AlertOptions): number;
  /** The same condition in PromQL, per scraped process (by job, instance). */
  promql(options: AlertOptions): string;
}

/** A rule over the current values (gauges). */
export interface InstantRule extends RuleBase {
  kind: 'instant';
  evaluate(view: MetricsView, options: AlertOptions): Evaluation;
}

/**
 * A rule over a window: `sample` reads cumulative values (counters, histogram
 * buckets) at each evaluation; `evaluate` gets their increase since the reading
 * one window ago and the seconds between the two, like PromQL's increase()/rate().
 */
export interface WindowRule extends RuleBase {
  kind: 'window';
  sample(view: MetricsView, options: AlertOptions): number[];
  evaluate(increase: readonly number[], seconds: number, view: MetricsView, options: AlertOptions): Evaluation;
}

export type AlertRule = InstantRule | WindowRule;

/** Prometheus duration for a number of milliseconds (`5m`, `1m30s`, `250ms`). */
export function promDuration(ms: number): string {
  if (ms <= 0) return '0s';
  const units: [string, number][] = [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
    ['ms', 1],
  ];
  let rest = Math.round(ms);
  let out = '';
  for (const [unit, size] of units) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}

/** A number as PromQL writes it (no exponent for the thresholds used here). */
function num(v: number): string {
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(12)));
}

const BY = 'by (job, instance)';
const isOutput = (dependency: string) => dependency.startsWith('output:');
/** A pulled source's /readyz check (source:*) is SightlineSourceDown's business: other traffic is served either way. */
const isSource = (dependency: string) => dependency.startsWith('source:');
const isServerError = (status: string) => /^5\d\d$/.test(status);
/** Probes and scrapes are not traffic: a failing /readyz is SightlineModelNotReady's or SightlineDependencyDown's business. */
export const UNCOUNTED_ROUTES = ['/livez', '/readyz', '/metrics'];
const counted = (route: string) => !UNCOUNTED_ROUTES.includes(route);
const COUNTED = `route!~"${UNCOUNTED_ROUTES.join('|')}"`;
/** The route whose end-to-end latency the latency rule watches. */
export const LATENCY_ROUTE = '/v1/detect';
export const REQUEST_DURATION = 'sightline_request_duration_seconds';

/** `name:version`-style list of the series' label values, for the description. */
function listOf(series: { labels: Record<string, string | number | undefined> }[], keys: readonly string[]): string {
  return series
    .map((s) => keys.map((k) => String(s.labels[k] ?? '')).join(':'))
    .sort()
    .join(', ');
}

/** The built-in rules (names, severities and conditions shared with deploy/prometheus). */
export const ALERT_RULES: readonly AlertRule[] = [
  {
    kind: 'window',
    name: 'SightlineHighErrorRate',
    severity: 'critical',
    unit: 'ratio',
    summary: 'Many requests fail with 5xx',
    describe: (v, t) => `${v} of the requests in the window (probes and scrapes aside) were answered with a 5xx status (threshold ${t}).`,
    metrics: ['sightline_requests_total'],
    threshold: (o) => o.errorRate,
    sample: (view) => [
      view.sum('sightline_requests_total', { route: counted, status: isServerError }),
      view.sum('sightline_requests_total', { route: counted }),
    ],
    evaluate: ([errors = 0, total = 0], _s, _v, o) => ({
      value: total > 0 && total >= o.minRequests ? errors / total : null,
      detail: `${errors} of ${total} requests`,
    }),
    promql: (o) => {
      const w = promDuration(o.windowMs);
      return [
        `(`,
        `  sum ${BY} (rate(sightline_requests_total{${COUNTED},status=~"5.."}[${w}]))`,
        `  / sum ${BY} (rate(sightline_requests_total{${COUNTED}}[${w}]))`,
        `) > ${num(o.errorRate)}`,
        `and sum ${BY} (increase(sightline_requests_total{${COUNTED}}[${w}])) >= ${num(o.minRequests)}`,
      ].join('\n');
    },
  },
  {
    kind: 'window',
    name: 'SightlineHighLatency',
    severity: 'warning',
    unit: 'seconds',
    summary: 'Slow inspections: p95 latency of /v1/detect is high',
    describe: (v, t) => `p95 of ${LATENCY_ROUTE} request durations in the window is ${v} (threshold ${t}).`,
    metrics: [REQUEST_DURATION],
    threshold: (o) => o.p95LatencyMs / 1000,
    // Cumulative bucket counts; a histogram keeps its bucket layout, so the increase is per bucket.
    sample: (view) => view.buckets(REQUEST_DURATION, view.bucketBounds(REQUEST_DURATION), { route: LATENCY_ROUTE }),
    evaluate: (increase, _s, view) => {
      const bounds = view.bucketBounds(REQUEST_DURATION);
      if (bounds.length !== increase.length) return { value: null };
      return { value: histogramQuantile(0.95, bounds, increase), detail: `${increase[increase.length - 1] ?? 0} requests` };
    },
    promql: (o) =>
      `histogram_quantile(0.95, sum by (job, instance, le) (rate(${REQUEST_DURATION}_bucket{route="${LATENCY_ROUTE}"}[${promDuration(o.windowMs)}]))) > ${num(o.p95LatencyMs / 1000)}`,
  },
  {
    kind: 'instant',
    name: 'SightlineQueueBacklog',
    severity: 'warning',
    unit: 'count',
    summary: 'Jobs pile up in the job queue',
    describe: (v, t) => `Jobs waiting in the job queue: ${v} (threshold ${t}); the workers do not keep up.`,
    metrics: ['sightline_queue_depth'],
    threshold: (o) => o.queueBacklog,
    evaluate: (view) => ({ value: view.max('sightline_queue_depth', { queue: 'jobs' }) }),
    promql: (o) => `max ${BY} (sightline_queue_depth{queue="jobs"}) > ${num(o.queueBacklog)}`,
  },
  {
    kind: 'window',
    name: 'SightlineDeadLetters',
    severity: 'warning',
    unit: 'count',
    summary: 'Jobs went to the dead letters',
    describe: (v, t) => `Jobs that went to the dead letters in the window: ${v} (threshold ${t}).`,
    metrics: ['sightline_jobs_total'],
    threshold: () => 0,
    sample: (view) => [view.sum('sightline_jobs_total', { state: 'dead' })],
    evaluate: ([dead = 0]) => ({ value: dead }),
    promql: (o) => `sum ${BY} (increase(sightline_jobs_total{state="dead"}[${promDuration(o.windowMs)}])) > 0`,
  },
  {
    kind: 'instant',
    name: 'SightlineCameraOffline',
    severity: 'warning',
    unit: 'count',
    summary: 'A camera stopped sending',
    describe: (v, t) => `Cameras offline (no frame for camera_offline_after_ms): ${v} (threshold ${t}).`,
    metrics: ['sightline_camera_state'],
    threshold: () => 0,
    evaluate: (view) => {
      const offline = view.series('sightline_camera_state').filter((s) => s.labels.state === 'offline' && s.value === 1);
      return { value: offline.length, ...(offline.length ? { detail: listOf(offline, ['line', 'camera']) } : {}) };
    },
    // Every replica exports every camera's state (read from the shared store), so each fires alike; Alertmanager groups them.
    promql: () => `count ${BY} (sightline_camera_state{state="offline"} == 1) > 0`,
  },
  {
    kind: 'instant',
    name: 'SightlineModelNotReady',
    severity: 'critical',
    unit: 'count',
    summary: 'A model is not ready',
    describe: (v, t) => `Model versions not READY: ${v} (threshold ${t}); requests for them fail.`,
    metrics: ['sightline_model_ready'],
    threshold: () => 0,
    evaluate: (view) => {
      const notReady = view.series('sightline_model_ready').filter((s) => s.value === 0);
      return { value: notReady.length, ...(notReady.length ? { detail: listOf(notReady, ['model', 'version']) } : {}) };
    },
    promql: () => `count ${BY} (sightline_model_ready == 0) > 0`,
  },
  {
    kind: 'window',
    name: 'SightlineInferenceStalled',
    severity: 'warning',
    unit: 'count',
    summary: 'A model instance stalled and was replaced',
    describe: (v, t) =>
      `Model instances replaced in the window after an inference ran past inference_stall_ms: ${v} (threshold ${t}); their requests got 503 INFERENCE_STALLED and a stuck thread keeps its core until its run returns.`,
    metrics: ['sightline_model_instance_restarts_total'],
    threshold: () => 0,
    sample: (view) => [view.sum('sightline_model_instance_restarts_total')],
    evaluate: ([restarts = 0]) => ({ value: restarts }),
    promql: (o) => `sum ${BY} (increase(sightline_model_instance_restarts_total[${promDuration(o.windowMs)}])) > 0`,
  },
  {
    kind: 'instant',
    name: 'SightlineDependencyDown',
    severity: 'critical',
    unit: 'count',
    summary: 'A dependency is down',
    describe: (v, t) => `Dependencies unreachable (store, queue, broker): ${v} (threshold ${t}).`,
    metrics: ['sightline_dependency_up'],
    threshold: () => 0,
    evaluate: (view) => {
      const down = view
        .series('sightline_dependency_up')
        .filter((s) => s.value === 0 && !isOutput(String(s.labels.dependency)) && !isSource(String(s.labels.dependency)));
      return { value: down.length, ...(down.length ? { detail: listOf(down, ['dependency']) } : {}) };
    },
    // A factory output's peer (output:*) is SightlineOutputDisconnected's business: results are kept either way.
    // A pulled source (source:*) is SightlineSourceDown's.
    promql: () => `count ${BY} (sightline_dependency_up{dependency!~"output:.*|source:.*"} == 0) > 0`,
  },
  {
    kind: 'instant',
    name: 'SightlineConnectionsNearLimit',
    severity: 'warning',
    unit: 'ratio',
    summary: 'Open connections near the limit',
    describe: (v, t) => `Open connections are at ${v} of max_connections (threshold ${t}); new ones will be refused at the limit.`,
    metrics: ['sightline_connections'],
    threshold: (o) => o.connectionsRatio,
    evaluate: (view, o) => {
      const open = view.sum('sightline_connections');
      return { value: o.maxConnections > 0 ? open / o.maxConnections : null, detail: `${open} of ${o.maxConnections}` };
    },
    // Each server exports its max_connections as sightline_connections_limit, so the rule
    // follows every server's own limit (in-process: options.maxConnections, from the same config key).
    promql: (o) => `sum ${BY} (sightline_connections) / max ${BY} (sightline_connections_limit > 0) > ${num(o.connectionsRatio)}`,
  },
  {
    kind: 'window',
    name: 'SightlineRequestsRejected',
    severity: 'warning',
    unit: 'per_second',
    summary: 'Saturated: admission control rejects requests',
    describe: (v, t) => `Admission control rejects requests at ${v} (threshold ${t}): queue full, deadlines, memory or event-loop pressure.`,
    metrics: ['sightline_rejected_total'],
    threshold: (o) => o.rejectedPerSecond,
    sample: (view) => [view.sum('sightline_rejected_total')],
    evaluate: ([rejected = 0], seconds) => ({ value: seconds > 0 ? rejected / seconds : null, detail: `${rejected} rejected` }),
    promql: (o) => `sum ${BY} (rate(sightline_rejected_total[${promDuration(o.windowMs)}])) > ${num(o.rejectedPerSecond)}`,
  },
  {
    kind: 'instant',
    name: 'SightlineEventLoopLag',
    severity: 'warning',
    unit: 'seconds',
    summary: 'Saturated: the event loop lags',
    describe: (v, t) => `The event loop's p99 lag is ${v} (threshold ${t}): the process is CPU-bound or blocked.`,
    // prom-client updates every nodejs_eventloop_lag_* gauge (and resets its monitor)
    // when nodejs_eventloop_lag_seconds is read: that one comes first.
    metrics: ['nodejs_eventloop_lag_seconds', 'nodejs_eventloop_lag_p99_seconds'],
    threshold: (o) => o.eventLoopLagMs / 1000,
    evaluate: (view) => ({ value: view.max('nodejs_eventloop_lag_p99_seconds') }),
    promql: (o) => `max ${BY} (nodejs_eventloop_lag_p99_seconds) > ${num(o.eventLoopLagMs / 1000)}`,
  },
  // The image-quality gate (docs/models.md#image-quality-gate): one blurred frame is a `check`; a line
  // whose frames keep leaving the envelope has a camera problem (focus, light, a dirty lens).
  {
    kind: 'window',
    name: 'SightlineImageQualityDrift',
    severity: 'warning',
    unit: 'ratio',
    summary: "A line's images drift out of the model's image-quality envelope",
    describe: (v, t) =>
      `${v} of a line's verdicts in the window are check: its images are outside the model's image-quality envelope (blurred, badly exposed, noisy; threshold ${t}). Look at the line's camera: focus, lighting, lens; sightline_image_quality_outside_total says why.`,
    metrics: ['sightline_verdicts_total'],
    threshold: (o) => o.qualityCheckRatio,
    // Per line, as [check, all] pairs in the order of the sorted line names: lines only
    // appear (counters are never removed), and a new one changes the length, which
    // the engine reads as "every series born after the baseline".
    sample: (view) => {
      const lines = [...new Set(view.series('sightline_verdicts_total').map((s) => String(s.labels.line)))].sort();
      return lines.flatMap((line) => [view.sum('sightline_verdicts_total', { line, verdict: 'check' }), view.sum('sightline_verdicts_total', { line })]);
    },
    evaluate: (increase, _s, view, o) => {
      const lines = [...new Set(view.series('sightline_verdicts_total').map((s) => String(s.labels.line)))].sort();
      let worst: number | null = null;
      const over: string[] = [];
      for (let i = 0; i < lines.length; i++) {
        const check = increase[2 * i] ?? 0;
        const total = increase[2 * i + 1] ?? 0;
        if (total <= 0 || total < o.minRequests) continue;
        const share = check / total;
        if (worst === null || share > worst) worst = share;
        if (share > o.qualityCheckRatio) over.push(`${lines[i]}: ${check} of ${total}`);
      }
      return { value: worst, ...(over.length ? { detail: over.join(', ') } : {}) };
    },
    promql: (o) => {
      const w = promDuration(o.windowMs);
      const by = 'by (job, instance, line)';
      return [
        `(`,
        `  sum ${by} (rate(sightline_verdicts_total{verdict="check"}[${w}]))`,
        `  / sum ${by} (rate(sightline_verdicts_total[${w}]))`,
        `) > ${num(o.qualityCheckRatio)}`,
        `and sum ${by} (increase(sightline_verdicts_total[${w}])) >= ${num(o.minRequests)}`,
      ].join('\n');
    },
  },
  // Snapshots (src/snapshots): a full or read-only snapshot directory stops them, never detection.
  {
    kind: 'window',
    name: 'SightlineSnapshotsFailing',
    severity: 'warning',
    unit: 'count',
    summary: 'Snapshots cannot be written',
    describe: (v, t) =>
      `Result images not kept because the snapshot directory is full or not writable: ${v} in the window (threshold ${t}); detection goes on without them.`,
    metrics: ['sightline_snapshots_skipped_total'],
    threshold: () => 0,
    sample: (view) => [view.sum('sightline_snapshots_skipped_total', { reason: (r) => r === 'disk_full' || r === 'write_failed' })],
    evaluate: ([failed = 0]) => ({ value: failed }),
    promql: (o) => `sum ${BY} (increase(sightline_snapshots_skipped_total{reason=~"disk_full|write_failed"}[${promDuration(o.windowMs)}])) > 0`,
  },
  // Factory outputs (src/outputs): a peer away or an outbox overflowing never stops detection, but the line's systems miss results.
  {
    kind: 'instant',
    name: 'SightlineOutputDisconnected',
    severity: 'warning',
    unit: 'count',
    summary: 'A factory output lost its peer',
    describe: (v, t) =>
      `Outputs not connected to their broker, receiver or port (MQTT, webhooks, OPC UA, Modbus): ${v} (threshold ${t}); MQTT and webhook messages wait in their outboxes.`,
    metrics: ['sightline_output_connected'],
    threshold: () => 0,
    evaluate: (view) => {
      const down = view.series('sightline_output_connected').filter((s) => s.value === 0);
      return { value: down.length, ...(down.length ? { detail: listOf(down, ['output']) } : {}) };
    },
    promql: () => `count ${BY} (sightline_output_connected == 0) > 0`,
  },
  // Pulled sources (src/sources): a hot folder or camera URL the server cannot read; it retries with backoff by itself.
  {
    kind: 'instant',
    name: 'SightlineSourceDown',
    severity: 'warning',
    unit: 'count',
    summary: 'A pulled source cannot be read',
    describe: (v, t) =>
      `Pulled sources (hot folders, camera URLs) that cannot be read: ${v} (threshold ${t}); each is retried with backoff, GET /v1/sources says why.`,
    metrics: ['sightline_source_up'],
    threshold: () => 0,
    evaluate: (view) => {
      const down = view.series('sightline_source_up').filter((s) => s.value === 0);
      return { value: down.length, ...(down.length ? { detail: listOf(down, ['source']) } : {}) };
    },
    promql: () => `count ${BY} (sightline_source_up == 0) > 0`,
  },
  {
    kind: 'window',
    name: 'SightlineOutputDropping',
    severity: 'warning',
    unit: 'count',
    summary: 'A factory output drops messages',
    describe: (v, t) =>
      `Messages a factory output gave up in the window (outbox full, attempts used up, PLC buffer full): ${v} (threshold ${t}); GET /v1/outputs says which.`,
    metrics: ['sightline_output_dropped_total'],
    threshold: () => 0,
    sample: (view) => [view.sum('sightline_output_dropped_total')],
    evaluate: ([dropped = 0]) => ({ value: dropped }),
    promql: (o) => `sum ${BY} (increase(sightline_output_dropped_total[${promDuration(o.windowMs)}])) > 0`,
  },
];
