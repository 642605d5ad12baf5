import type { Logger } from 'pino';
import type { OutputMetrics } from '../metrics.js';
import type { Outbox, OutboxEntry } from '../outbox.js';
import { ConnectionLost } from './connection.js';

/** Messages claimed at once; each is still sent and acknowledged one after another. */
const BATCH = 50;
/** Long enough for a batch to go out one acknowledgement at a time; a holder that dies lets them come back after it. */
const LEASE_MS = 60_000;
/** How often an idle drain looks again without being woken (messages another replica wrote, a database that came back). */
const IDLE_POLL_MS = 1000;
/** A message the broker keeps refusing while connected (not a lost connection) is tried this often, then becomes a dead letter. */
const MAX_ATTEMPTS = 5;

export interface DrainDeps {
  outbox: Outbox;
  metrics: OutputMetrics;
  logger: Logger;
  /** Publishes one message and resolves once the broker acknowledged it; rejects with ConnectionLost when cut off. */
  send(payload: string): Promise<void>;
  /** Resolves once connected and ready to send results (births and availability out first), or when stopping. */
  ready(): Promise<void>;
  isReady(): boolean;
  /** After each message that left the outbox (sent or dead), for the depth gauge. */
  onChange(): void;
}

/**
 * Sends an outbox in order, one message in flight at a time: claims the oldest
 * batch, publishes each and deletes it once acknowledged. When the connection
 * drops mid-batch the rest is released (no attempt counted) and the drain waits
 * for the next connection, then starts again from the oldest message.
 */
export class OutboxDrain {
  readonly #deps: DrainDeps;
  #stopped = false;
  #wake: (() => void) | undefined;
  #running: Promise<void> | undefined;
  sent = 0;
  failed = 0;

  constructor(deps: DrainDeps) {
    this.#deps = deps;
  }

  start(): void {
    this.#running ??= this.#loop().catch((err: unknown) => this.#deps.logger.error({ event: 'mqtt_drain_failed', err }, 'MQTT outbox drain stopped'));
  }

  /** A message was written: look now rather than at the next poll. */
  poke(): void {
    this.#wake?.();
  }

  /** Resolves once the outbox is empty (nothing due), or after `timeoutMs`. */
  async idle(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if ((await this.#deps.outbox.depth().catch(() => 1)) === 0) return true;
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  }

  /** Stops after the message in flight; claims still held are released. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.poke();
    await this.#running;
  }

  async #sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
    this.#wake = undefined;
  }

  async #loop(): Promise<void> {
    const { outbox, logger } = this.#deps;
    while (!this.#stopped) {
      await this.#deps.ready();
      if (this.#stopped) break;
      let batch: OutboxEntry[];
      try {
        batch = await outbox.claim(BATCH, LEASE_MS);
      } catch (err) {
        logger.warn({ event: 'mqtt_outbox_claim_failed', err }, 'MQTT output: could not read the outbox; trying again');
        await this.#sleep(IDLE_POLL_MS);
        continue;
      }
      if (batch.length === 0) {
        await this.#sleep(IDLE_POLL_MS);
        continue;
      }
      await this.#sendBatch(batch);
    }
  }

  async #sendBatch(batch: OutboxEntry[]): Promise<void> {
    const { outbox, metrics, logger } = this.#deps;
    const output = outbox.output;
    for (const [i, entry] of batch.entries()) {
      if (this.#stopped || !this.#deps.isReady()) {
        await this.#release(batch.slice(i));
        return;
      }
      try {
        await this.#deps.send(entry.payload);
      } catch (err) {
        this.failed++;
        metrics.failed.inc({ output });
        if (err instanceof ConnectionLost) {
          // Sent again from the oldest once reconnected (this one may reach the broker twice: QoS 1 is at least once).
          await this.#release(batch.slice(i));
          return;
        }
        await this.#refused(entry, err as Error);
        await this.#release(batch.slice(i + 1));
        return;
      }
      await outbox
        .done(entry.seq)
        .catch((err: unknown) =>
          logger.warn({ event: 'mqtt_outbox_done_failed', err, seq: entry.seq }, 'MQTT output: sent message not deleted from the outbox'),
        );
      this.sent++;
      metrics.sent.inc({ output });
      this.#deps.onChange();
    }
  }

  /** The broker (or mqtt.js) refused the message while connected: tried again later, then kept as a dead letter. */
  async #refused(entry: OutboxEntry, err: Error): Promise<void> {
    const { outbox, metrics, logger } = this.#deps;
    if (entry.attempts + 1 >= MAX_ATTEMPTS) {
      await outbox.kill(entry.seq, err.message).catch(() => undefined);
      metrics.dropped.inc({ output: outbox.output, reason: 'dead_letter' });
      logger.error(
        { event: 'mqtt_dead_letter', seq: entry.seq, key: entry.key, err },
        `MQTT output: message ${entry.key} refused ${MAX_ATTEMPTS} times, kept as a dead letter`,
      );
      this.#deps.onChange();
      return;
    }
    const backoff = 1000 * 2 ** entry.attempts;
    await outbox.retry(entry.seq, Date.now() + backoff, err.message).catch(() => undefined);
    logger.warn(
      { event: 'mqtt_publish_refused', seq: entry.seq, key: entry.key, err },
      `MQTT output: message ${entry.key} refused, trying again in ${backoff} ms`,
    );
  }

  async #release(entries: OutboxEntry[]): Promise<void> {
    for (const entry of entries) await this.#deps.outbox.release(entry.seq).catch(() => undefined);
  }
}
