import { createHash } from 'node:crypto';

/** One alert in a notification, as Alertmanager's webhook carries it. */
export interface AlertNotification {
  status: 'firing' | 'resolved';
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** When the alert started firing (ISO 8601). */
  startsAt: string;
  /** When it resolved; Alertmanager's zero time while firing. */
  endsAt: string;
}

/** The webhook body: Alertmanager's webhook format (version 4), one alert per notification. */
export interface WebhookPayload {
  version: '4';
  groupKey: string;
  truncatedAlerts: 0;
  status: 'firing' | 'resolved';
  receiver: string;
  groupLabels: Record<string, string>;
  commonLabels: Record<string, string>;
  commonAnnotations: Record<string, string>;
  externalURL: string;
  alerts: (AlertNotification & { generatorURL: string; fingerprint: string })[];
}

/** The logging the alert code needs (pino's and Fastify's loggers fit). */
export interface AlertLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface Notifier {
  /** Queues a notification; never throws and never waits for delivery. */
  send(alert: AlertNotification): void;
  /** Waits up to timeoutMs for deliveries under way, then gives up on the rest. */
  close(timeoutMs?: number): Promise<void>;
}

export interface WebhookNotifierOptions {
  urls: readonly string[];
  logger?: AlertLogger;
  /** Attempts per notification and URL (first try included). Default 5. */
  attempts?: number;
  /** Delay before the first retry, doubled each retry (with ±20% jitter), in ms. Default 1000. */
  backoffMs?: number;
  /** Longest delay between attempts, in ms. Default 30 000. */
  maxBackoffMs?: number;
  /** Per-attempt timeout, in ms. Default 5000. */
  timeoutMs?: number;
  /** Notifications waiting per URL before the oldest is dropped. Default 100. */
  maxQueue?: number;
  /** `receiver` in the payload. Default "sightline". */
  receiver?: string;
  /** Extra request headers (e.g. Authorization). */
  headers?: Record<string, string>;
}

function fingerprint(labels: Record<string, string>): string {
  const canonical = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join('\u0000');
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

export function webhookPayload(alert: AlertNotification, receiver = 'sightline'): WebhookPayload {
  const groupLabels = { alertname: alert.labels.alertname ?? '' };
  return {
    version: '4',
    groupKey: `{}:{alertname="${groupLabels.alertname}"}`,
    truncatedAlerts: 0,
    status: alert.status,
    receiver,
    groupLabels,
    commonLabels: alert.labels,
    commonAnnotations: alert.annotations,
    externalURL: '',
    alerts: [{ ...alert, generatorURL: '', fingerprint: fingerprint(alert.labels) }],
  };
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/** Retry-After in ms (seconds or an HTTP date), or undefined. */
function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * POSTs each notification as JSON to every configured URL. Each URL has its own
 * queue delivered in order (a resolved notification never overtakes its firing
 * one); a failed attempt (network error, timeout, non-2xx) is retried with
 * exponential backoff, honouring Retry-After, up to `attempts`, then logged and
 * dropped. Nothing here blocks the caller.
 */
export class WebhookNotifier implements Notifier {
  private readonly queues: Map<string, WebhookPayload[]>;
  private readonly workers = new Map<string, Promise<void>>();
  private readonly closing = new AbortController();
  private readonly o: Required<Omit<WebhookNotifierOptions, 'logger' | 'urls'>>;

  constructor(private readonly options: WebhookNotifierOptions) {
    for (const url of options.urls) new URL(url); // throws on a malformed URL at start
    this.queues = new Map(options.urls.map((u) => [u, []]));
    this.o = {
      attempts: Math.max(1, options.attempts ?? 5),
      backoffMs: options.backoffMs ?? 1_000,
      maxBackoffMs: options.maxBackoffMs ?? 30_000,
      timeoutMs: options.timeoutMs ?? 5_000,
      maxQueue: Math.max(1, options.maxQueue ?? 100),
      receiver: options.receiver ?? 'sightline',
      headers: options.headers ?? {},
    };
  }

  send(alert: AlertNotification): void {
    if (this.closing.signal.aborted) return;
    const payload = webhookPayload(alert, this.o.receiver);
    for (const [url, queue] of this.queues) {
      if (queue.length >= this.o.maxQueue) {
        const dropped = queue.shift();
        this.options.logger?.warn(
          { event: 'alert_webhook_dropped', url, alertname: dropped?.groupLabels.alertname, status: dropped?.status },
          `alert webhook ${url}: queue full, oldest notification dropped`,
        );
      }
      queue.push(payload);
      if (!this.workers.has(url)) {
        const worker = this.drain(url, queue).finally(() => this.workers.delete(url));
        this.workers.set(url, worker);
      }
    }
  }

  private async drain(url: string, queue: WebhookPayload[]): Promise<void> {
    for (let payload = queue.shift(); payload; payload = queue.shift()) {
      await this.deliver(url, payload);
      if (this.closing.signal.aborted) return;
    }
  }

  private async deliver(url: string, payload: WebhookPayload): Promise<boolean> {
    const log = this.options.logger;
    const fields = { url, alertname: payload.groupLabels.alertname, status: payload.status };
    const body = JSON.stringify(payload);
    let delay = this.o.backoffMs;
    for (let attempt = 1; attempt <= this.o.attempts; attempt++) {
      let problem: string;
      let wait: number | undefined;
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'sightline-alerts', ...this.o.headers },
          body,
          signal: AbortSignal.any([AbortSignal.timeout(this.o.timeoutMs), this.closing.signal]),
        });
        // The body is not needed; reading it frees the connection.
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) {
          log?.info({ event: 'alert_webhook_sent', ...fields, attempt }, `alert webhook ${url}: ${payload.status} ${fields.alertname} delivered`);
          return true;
        }
        problem = `HTTP ${res.status}`;
        wait = retryAfterMs(res.headers.get('retry-after'));
      } catch (err) {
        problem = (err as Error).name === 'TimeoutError' ? `timed out after ${this.o.timeoutMs} ms` : (err as Error).message;
      }
      if (this.closing.signal.aborted) break;
      if (attempt === this.o.attempts) {
        log?.error(
          { event: 'alert_webhook_failed', ...fields, attempts: attempt, error: problem },
          `alert webhook ${url}: giving up after ${attempt} attempts (${problem})`,
        );
        return false;
      }
      const jitter = 0.8 + Math.random() * 0.4;
      const next = Math.min(this.o.maxBackoffMs, Math.max(wait ?? 0, delay * jitter));
      log?.warn(
        { event: 'alert_webhook_retry', ...fields, attempt, error: problem, retry_in_ms: Math.round(next) },
        `alert webhook ${url}: ${problem}, retrying`,
      );
      await sleep(next, this.closing.signal);
      delay *= 2;
    }
    log?.warn({ event: 'alert_webhook_abandoned', ...fields }, `alert webhook ${url}: shutting down, notification not delivered`);
    return false;
  }

  async close(timeoutMs = 2_000): Promise<void> {
    const pending = Promise.all(this.workers.values());
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([pending, timeout]);
    clearTimeout(timer);
    // Whatever is still retrying stops now.
    this.closing.abort();
    await pending;
  }
}
