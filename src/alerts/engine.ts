import { Gauge, type Registry } from 'prom-client';
import { MetricsView } from './metrics-view.js';
import { ALERT_RULES, DEFAULT_ALERT_OPTIONS, type AlertOptions, type AlertRule, type Severity, type Unit } from './rules.js';
import type { AlertLogger, AlertNotification, Notifier } from './notifier.js';

export type AlertState = 'inactive' | 'pending' | 'firing';

/** One rule's state, as GET /v1/alerts shows it. */
export interface AlertStatus {
  name: string;
  severity: Severity;
  state: AlertState;
  /** When the current state began (ISO 8601); null while inactive since start. */
  since: string | null;
  /** The rule's last value; null when there was no data. */
  value: number | null;
  threshold: number;
  unit: Unit;
  for_ms: number;
  summary: string;
  description: string;
  /** When the rule was last evaluated (ISO 8601), null before the first evaluation. */
  evaluated_at: string | null;
}

/** One change of a rule's state, as GET /v1/alerts/history lists it. */
export interface AlertChange {
  /** ISO 8601 time of the change. */
  at: string;
  name: string;
  severity: Severity;
  from: AlertState;
  to: AlertState;
  /** The rule's value at the change. */
  value: number | null;
  description: string;
}

/** Changes kept by default (config alert_history_size). */
export const DEFAULT_ALERT_HISTORY_SIZE = 500;

export interface AlertEngineOptions {
  registry: Registry;
  /** How many state changes to keep for history(), newest last (default DEFAULT_ALERT_HISTORY_SIZE). */
  historySize?: number;
  logger?: AlertLogger;
  /** Thresholds and timings; missing fields take DEFAULT_ALERT_OPTIONS. */
  options?: Partial<AlertOptions>;
  /** Where firing and resolved notifications go (none: state only). */
  notifier?: Notifier;
  /** Rules to evaluate (default: ALERT_RULES). */
  rules?: readonly AlertRule[];
  /** Labels added to every alert (e.g. instance). */
  labels?: Record<string, string>;
  /** Clock in ms since the epoch (tests). */
  now?: () => number;
}

interface RuleState {
  rule: AlertRule;
  state: AlertState;
  /** Since when the condition holds (pending or firing). */
  activeAt: number | null;
  firedAt: number | null;
  /** Start of the current state. */
  since: number | null;
  value: number | null;
  detail: string | undefined;
  evaluatedAt: number | null;
  /** Cumulative readings of a window rule, oldest first. */
  history: { t: number; values: number[] }[];
}

const ALERT_METRIC = 'sightline_alerts_firing';

/** A value as the description shows it. */
export function formatValue(value: number | null, unit: Unit): string {
  if (value === null || !Number.isFinite(value)) return String(value);
  const round = (v: number, digits: number) => String(Number(v.toFixed(digits)));
  switch (unit) {
    case 'ratio':
      return `${round(value * 100, 2)}%`;
    case 'seconds':
      return value < 1 ? `${round(value * 1000, 1)}ms` : `${round(value, 3)}s`;
    case 'per_second':
      return `${round(value, 3)}/s`;
    default:
      return round(value, 3);
  }
}

/**
 * Evaluates the alert rules on the live metrics registry every evalIntervalMs:
 * a rule whose condition holds goes pending, fires once it has held for forMs,
 * and resolves as soon as it no longer holds (Prometheus' semantics). Firing
 * and resolving are handed to the notifier, which delivers in the background:
 * a slow or dead webhook never delays evaluation.
 */
export class AlertEngine {
  readonly options: AlertOptions;
  private readonly registry: Registry;
  private readonly logger: AlertEngineOptions['logger'];
  private readonly notifier: Notifier | undefined;
  private readonly states: RuleState[];
  private readonly labels: Record<string, string>;
  private readonly now: () => number;
  private readonly metricNames: string[];
  private readonly firingGauge: Gauge<'alertname' | 'severity'>;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** State changes, oldest first, at most historySize: in memory, so a restart starts it anew. */
  private readonly changes: AlertChange[] = [];
  private readonly historySize: number;

  constructor(opts: AlertEngineOptions) {
    this.options = { ...DEFAULT_ALERT_OPTIONS, ...stripUndefined(opts.options ?? {}) };
    this.registry = opts.registry;
    this.logger = opts.logger;
    this.notifier = opts.notifier;
    this.labels = opts.labels ?? {};
    this.now = opts.now ?? Date.now;
    this.historySize = opts.historySize ?? DEFAULT_ALERT_HISTORY_SIZE;
    const rules = opts.rules ?? ALERT_RULES;
    const names = new Set(rules.map((r) => r.name));
    if (names.size !== rules.length) throw new Error('alert rule names must be unique');
    this.states = rules.map((rule) => ({
      rule,
      state: 'inactive',
      activeAt: null,
      firedAt: null,
      since: null,
      value: null,
      detail: undefined,
      evaluatedAt: null,
      history: [],
    }));
    this.metricNames = [...new Set(rules.flatMap((r) => r.metrics))];
    const existing = this.registry.getSingleMetric(ALERT_METRIC);
    this.firingGauge =
      (existing as Gauge<'alertname' | 'severity'> | undefined) ??
      new Gauge({
        name: ALERT_METRIC,
        help: 'Sightline alerts by rule: 1 while firing, else 0 (rules evaluated in-process, see GET /v1/alerts).',
        labelNames: ['alertname', 'severity'] as const,
        registers: [this.registry],
      });
    for (const rule of rules) this.firingGauge.set({ alertname: rule.name, severity: rule.severity }, 0);
  }

  /** Evaluates every evalIntervalMs until stop() (the timer does not keep the process alive). */
  start(): void {
    if (this.timer || this.options.evalIntervalMs <= 0) return;
    const tick = () => {
      // One evaluation at a time: a tick that finds the last one running is skipped.
      if (this.running) return;
      this.running = this.evaluate()
        .catch((err: Error) => this.logger?.error({ event: 'alert_eval_failed', err }, `alert evaluation failed: ${err.message}`))
        .finally(() => {
          this.running = undefined;
        });
    };
    tick();
    this.timer = setInterval(tick, this.options.evalIntervalMs);
    this.timer.unref();
  }

  /** Stops evaluating and waits (bounded by the notifier) for notifications under way. */
  async stop(timeoutMs = 2_000): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
    await this.notifier?.close(timeoutMs);
  }

  /** One evaluation of every rule; exposed for tests and tools. */
  async evaluate(): Promise<void> {
    const view = await MetricsView.read(this.registry, this.metricNames);
    const t = this.now();
    for (const s of this.states) {
      let value: number | null;
      let detail: string | undefined;
      try {
        ({ value, detail } = this.value(s, view, t));
      } catch (err) {
        // One broken rule must not stop the others.
        this.logger?.error({ event: 'alert_rule_failed', alertname: s.rule.name, err }, `alert rule ${s.rule.name} failed: ${(err as Error).message}`);
        value = null;
        detail = undefined;
      }
      s.value = value;
      s.detail = detail;
      s.evaluatedAt = t;
      const active = value !== null && value > s.rule.threshold(this.options);
      this.transition(s, active, t);
    }
  }

  private value(s: RuleState, view: MetricsView, t: number): { value: number | null; detail?: string } {
    const { rule } = s;
    if (rule.kind === 'instant') return rule.evaluate(view, this.options);
    const values = rule.sample(view, this.options);
    s.history.push({ t, values });
    // Keep the newest reading at least one window old as the baseline, drop older ones.
    const start = t - this.options.windowMs;
    let base = 0;
    for (let i = 0; i < s.history.length; i++) if (s.history[i]!.t <= start) base = i;
    if (base > 0) s.history.splice(0, base);
    const baseline = s.history[0]!;
    // A series born after the baseline started from zero (counters and buckets do).
    const before = baseline.values.length === values.length ? baseline.values : values.map(() => 0);
    // A counter that went down was reset: its increase is its new value (PromQL's rule).
    const increase = values.map((v, i) => (v >= before[i]! ? v - before[i]! : v));
    return rule.evaluate(increase, (t - baseline.t) / 1000, view, this.options);
  }

  private transition(s: RuleState, active: boolean, t: number): void {
    const { rule } = s;
    if (active) {
      if (s.state === 'inactive') {
        this.record(s, 'pending', t);
        s.state = 'pending';
        s.activeAt = t;
        s.since = t;
        this.logger?.info({ event: 'alert_pending', alertname: rule.name, value: s.value }, `alert ${rule.name} pending`);
      }
      if (s.state === 'pending' && t - s.activeAt! >= this.options.forMs) {
        this.record(s, 'firing', t);
        s.state = 'firing';
        s.firedAt = t;
        s.since = t;
        this.firingGauge.set({ alertname: rule.name, severity: rule.severity }, 1);
        this.logger?.warn(
          { event: 'alert_firing', alertname: rule.name, severity: rule.severity, value: s.value },
          `alert ${rule.name} firing: ${this.description(s)}`,
        );
        this.notify(s, 'firing', t);
      }
      return;
    }
    if (s.state === 'firing') {
      this.firingGauge.set({ alertname: rule.name, severity: rule.severity }, 0);
      this.logger?.info({ event: 'alert_resolved', alertname: rule.name, severity: rule.severity, value: s.value }, `alert ${rule.name} resolved`);
      this.notify(s, 'resolved', t);
    }
    if (s.state !== 'inactive') {
      this.record(s, 'inactive', t);
      s.state = 'inactive';
      s.since = t;
      s.activeAt = null;
      s.firedAt = null;
    }
  }

  private record(s: RuleState, to: AlertState, t: number): void {
    if (this.historySize <= 0) return;
    const { rule } = s;
    this.changes.push({
      at: new Date(t).toISOString(),
      name: rule.name,
      severity: rule.severity,
      from: s.state,
      to,
      value: s.value,
      description: this.description(s),
    });
    if (this.changes.length > this.historySize) this.changes.splice(0, this.changes.length - this.historySize);
  }

  /** The last state changes, newest first (at most `limit`). */
  history(limit = this.historySize): AlertChange[] {
    return this.changes.slice(-Math.max(0, limit)).reverse();
  }

  private description(s: RuleState): string {
    const text = s.rule.describe(formatValue(s.value, s.rule.unit), formatValue(s.rule.threshold(this.options), s.rule.unit));
    return s.detail ? `${text} (${s.detail})` : text;
  }

  private notify(s: RuleState, status: 'firing' | 'resolved', t: number): void {
    if (!this.notifier) return;
    const { rule } = s;
    const alert: AlertNotification = {
      status,
      labels: { alertname: rule.name, severity: rule.severity, service: 'sightline', ...this.labels },
      annotations: {
        summary: rule.summary,
        description: this.description(s),
        value: String(s.value),
        threshold: String(rule.threshold(this.options)),
      },
      // startsAt: when it started firing; kept on the resolved notification.
      startsAt: new Date(s.firedAt ?? t).toISOString(),
      endsAt: status === 'resolved' ? new Date(t).toISOString() : '0001-01-01T00:00:00Z',
    };
    this.notifier.send(alert);
  }

  /** Every rule's current state, in rule order. */
  list(): AlertStatus[] {
    return this.states.map((s) => ({
      name: s.rule.name,
      severity: s.rule.severity,
      state: s.state,
      since: s.since === null ? null : new Date(s.since).toISOString(),
      value: s.value,
      threshold: s.rule.threshold(this.options),
      unit: s.rule.unit,
      for_ms: this.options.forMs,
      summary: s.rule.summary,
      description: this.description(s),
      evaluated_at: s.evaluatedAt === null ? null : new Date(s.evaluatedAt).toISOString(),
    }));
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
