import type { Logger } from 'pino';
import type { SightlineEvent } from '../../protocol/events.js';
import type { OutputContext } from '../context.js';
import { splitList } from '../filter.js';
import type { OutputMetrics } from '../metrics.js';
import type { Outbox } from '../outbox.js';
import { OutboxWriter } from '../outbox-writer.js';
import type { Output, OutputHealth } from '../output.js';
import { Deliverer } from './deliverer.js';
import { decodeMessage, displayUrl, encodeMessage, resultBody } from './message.js';
import { UrlHealth } from './url-health.js';

const NAME = 'webhook';
/** Pushes waiting in memory while the outbox database is slow or away; beyond it they are dropped and counted. */
const MAX_PENDING_WRITES = 10_000;
/** sightline_output_outbox_depth is read after every change here, and this often for changes by other processes. */
const DEPTH_POLL_MS = 1000;

/**
 * Result webhooks (docs/outputs/webhooks.md): every result that passes the
 * filters becomes one outbox entry per URL, keyed by its request_id, and the
 * deliverer POSTs them, signed, with retries and dead letters. Results only:
 * camera and job events are for the MQTT output and /v1/stream.
 */
export class WebhookOutput implements Output {
  readonly name = NAME;
  readonly scope = 'local' as const;
  readonly outbox: Outbox;

  /** A dead letter for the API: the URL without its query or user info (tokens live there), the body as JSON. */
  describe(payload: string): unknown {
    const { url, body } = decodeMessage(payload);
    return { url: displayUrl(url), body: JSON.parse(body) as unknown };
  }
  readonly urls: readonly string[];
  readonly #logger: Logger;
  readonly #metrics: OutputMetrics;
  readonly #writer: OutboxWriter;
  readonly #deliverer: Deliverer;
  readonly #health: UrlHealth;
  #depthTimer: NodeJS.Timeout | undefined;
  #sampling: Promise<void> | undefined;
  #sampleAgain = false;
  #closed: Promise<void> | undefined;

  constructor(ctx: OutputContext) {
    const { config } = ctx;
    this.urls = splitList(config.webhook_urls);
    this.#logger = ctx.logger.child({ output: NAME });
    this.#metrics = ctx.metrics;
    this.outbox = ctx.outbox(NAME, config.webhook_outbox_max);
    this.#health = new UrlHealth(this.urls);
    this.#deliverer = new Deliverer({
      outbox: this.outbox,
      metrics: ctx.metrics,
      logger: this.#logger,
      health: this.#health,
      urls: this.urls,
      concurrency: config.webhook_concurrency,
      timeoutMs: config.webhook_timeout_ms,
      maxAttempts: config.webhook_max_attempts,
      backoff: { baseMs: config.webhook_backoff_ms, maxMs: config.webhook_backoff_max_ms },
      secret: config.webhook_secret,
      onSettled: () => this.#depthChanged(),
    });
    this.#writer = new OutboxWriter(this.outbox, {
      metrics: ctx.metrics,
      logger: this.#logger,
      max: Math.min(config.webhook_outbox_max, MAX_PENDING_WRITES),
      // The depth is read on the timer, not per message: a count per result would cost the request path.
      onWritten: () => this.#deliverer.kick(),
    });
  }

  async start(): Promise<void> {
    // Deliveries left by the last run (or released by a replica) go out from here.
    this.#deliverer.start();
    this.#depthTimer = setInterval(() => this.#depthChanged(), DEPTH_POLL_MS);
    this.#depthTimer.unref();
    this.#depthChanged();
  }

  handle(event: SightlineEvent): void {
    if (event.type !== 'result' || this.#closed) return;
    try {
      const body = resultBody(event);
      for (const url of this.urls) this.#writer.push(event.result.request_id, encodeMessage({ url, body }));
    } catch (err) {
      this.#logger.error({ event: 'webhook_handle_failed', err }, 'webhook output could not queue a result');
    }
  }

  health(): OutputHealth {
    return this.#health.health();
  }

  /** Resolves once every result handled so far is in the outbox (for tests and shutdown). */
  flushed(): Promise<void> {
    return this.#writer.flushed();
  }

  /** Reads the depth again soon: one read at a time, changes during a read coalesced into one more. */
  #depthChanged(): void {
    if (this.#sampling) {
      this.#sampleAgain = true;
      return;
    }
    this.#sampling = (async () => {
      do {
        this.#sampleAgain = false;
        await this.#sampleDepth();
      } while (this.#sampleAgain && !this.#closed);
    })().finally(() => {
      this.#sampling = undefined;
    });
  }

  async #sampleDepth(): Promise<void> {
    try {
      this.#metrics.outboxDepth.set({ output: NAME }, await this.outbox.depth());
    } catch {
      // The outbox is away: the deliverer says so in the log; the gauge keeps its last value.
    }
  }

  /** Writes what was handled to the outbox (so it survives the restart), then stops delivering. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#depthTimer) clearInterval(this.#depthTimer);
      await this.#writer.close();
      await this.#deliverer.close();
      await this.#sampling;
      await this.#sampleDepth();
    })();
    return this.#closed;
  }
}

export function createWebhookOutput(ctx: OutputContext): Output {
  return new WebhookOutput(ctx);
}
