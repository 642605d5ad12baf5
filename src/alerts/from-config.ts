import { hostname } from 'node:os';
import type { Registry } from 'prom-client';
import { AlertEngine } from './engine.js';
import { DEFAULT_ALERT_OPTIONS, type AlertOptions } from './rules.js';
import { WebhookNotifier, type AlertLogger, type WebhookNotifierOptions } from './notifier.js';

/**
 * Config keys read here (each optional: a missing key takes the default), so the
 * engine works with any config that has some or all of them.
 */
const CONFIG_TO_OPTION: [string, keyof AlertOptions][] = [
  ['alert_eval_interval_ms', 'evalIntervalMs'],
  ['alert_for_ms', 'forMs'],
  ['alert_window_ms', 'windowMs'],
  ['alert_error_rate', 'errorRate'],
  ['alert_p95_latency_ms', 'p95LatencyMs'],
  ['alert_queue_backlog', 'queueBacklog'],
  ['alert_connections_ratio', 'connectionsRatio'],
  ['alert_rejected_per_s', 'rejectedPerSecond'],
  ['alert_event_loop_lag_ms', 'eventLoopLagMs'],
  ['alert_quality_check_ratio', 'qualityCheckRatio'],
  ['max_connections', 'maxConnections'],
];

/** Alert options from a Sightline config (`alert_*` keys and max_connections). */
export function alertOptionsFromConfig(config: object): AlertOptions {
  const c = config as Record<string, unknown>;
  const options: AlertOptions = { ...DEFAULT_ALERT_OPTIONS };
  for (const [key, option] of CONFIG_TO_OPTION) {
    const v = c[key];
    if (typeof v === 'number' && Number.isFinite(v)) options[option] = v;
  }
  return options;
}

/** Webhook URLs from config `alert_webhooks` (comma- or whitespace-separated). */
export function alertWebhooksFromConfig(config: object): string[] {
  const v = (config as Record<string, unknown>).alert_webhooks;
  const list = Array.isArray(v) ? v.map(String) : typeof v === 'string' ? v.split(/[\s,]+/) : [];
  return list.map((u) => u.trim()).filter(Boolean);
}

export interface CreateAlertEngineOptions {
  /** The Sightline config (or any object with the alert_* keys). */
  config: object;
  registry: Registry;
  /** A pino or Fastify logger; alert lines carry component=alerts when it can make children. */
  logger?: AlertLogger & { child?(bindings: Record<string, unknown>): AlertLogger };
  /** Overrides on top of the config (tests: tiny for-durations). */
  options?: Partial<AlertOptions>;
  /** Overrides of the webhook delivery (attempts, backoff, timeout). */
  webhook?: Partial<Omit<WebhookNotifierOptions, 'urls' | 'logger'>>;
  /** Start evaluating at once (default true). */
  start?: boolean;
  now?: () => number;
}

/**
 * The in-process alert engine for a server: rules from ALERT_RULES with the
 * config's thresholds, webhooks from `alert_webhooks`, started unless told not
 * to. Stop it with `engine.stop()` when the server closes.
 */
export function createAlertEngine(opts: CreateAlertEngineOptions): AlertEngine {
  const urls = alertWebhooksFromConfig(opts.config);
  const logger = opts.logger?.child ? opts.logger.child({ component: 'alerts' }) : opts.logger;
  const notifier = urls.length ? new WebhookNotifier({ urls, ...opts.webhook, ...(logger ? { logger } : {}) }) : undefined;
  const engine = new AlertEngine({
    registry: opts.registry,
    options: { ...alertOptionsFromConfig(opts.config), ...opts.options },
    ...(notifier ? { notifier } : {}),
    ...(logger ? { logger } : {}),
    ...(opts.now ? { now: opts.now } : {}),
    ...(typeof (opts.config as { alert_history_size?: unknown }).alert_history_size === 'number'
      ? { historySize: (opts.config as { alert_history_size: number }).alert_history_size }
      : {}),
    labels: { instance: hostname() },
  });
  if (opts.start ?? true) engine.start();
  return engine;
}
