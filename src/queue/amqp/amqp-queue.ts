import { EventEmitter } from 'node:events';
import type { Channel } from 'amqplib';
import { Errors } from '../../errors.js';
import { asError, queueClosed, queueFull, queueUnavailable } from '../errors.js';
import type {
  ConsumeOptions,
  Consumer,
  DeadJob,
  EnqueueInput,
  EnqueueResult,
  JobHandler,
  JobInfo,
  JobQueue,
  JobQueueEvents,
  QueueStats,
} from '../job-queue.js';
import { allRetryDelays, deadListLimit, newJobId, resolveQueueOptions, validateEnqueue, type QueueOptions, type ResolvedQueueOptions } from '../options.js';
import type { JobStatePatch, JobStateStore } from '../state/job-state-store.js';
import { MemoryJobStateStore } from '../state/memory-state-store.js';
import { AmqpConsumer, type AmqpConsumerHost } from './amqp-consumer.js';
import { AmqpConnection } from './connection.js';
import { browseDead, takeDead } from './dead-letters.js';
import { EXPIRED_MESSAGE, jobPublishOptions, reviveOptions } from './message.js';
import { assertTopology, routingKey, topology, type Topology } from './topology.js';

export interface AmqpQueueOptions extends QueueOptions {
  /** @example 'amqp://guest:guest@rabbitmq:5672/?heartbeat=15' */
  url: string;
  /** Starts every exchange and queue name. Default `sightline`. */
  prefix?: string;
  /**
   * Where job states and idempotency keys live (a broker cannot look messages up
   * by id). Every API replica and worker must share it. Default: a
   * MemoryJobStateStore, right only when one process enqueues and consumes.
   */
  stateStore?: JobStateStore;
  /** Default `sightline-<pid>`. */
  connectionName?: string;
  /** Reconnect backoff: base (default 500 ms) doubling up to max (default 30 000 ms). */
  reconnectBaseMs?: number;
  reconnectMaxMs?: number;
  /** Per connection try. Default 10 000 ms. */
  connectTimeoutMs?: number;
  /** How long waitUntilReady() waits for a connection. Default 30 000 ms. */
  readyTimeoutMs?: number;
  /** How long enqueue waits for the broker's confirm. Default 10 000 ms. */
  publishTimeoutMs?: number;
  /** retryDead() scans at most this many dead messages. Default 10 000. */
  maxDeadScan?: number;
}

/**
 * The distributed back end on RabbitMQ (see topology.ts for the layout). The
 * broker holds the jobs; a JobStateStore holds what getJob() reports.
 */
export class AmqpJobQueue extends EventEmitter<JobQueueEvents> implements JobQueue {
  readonly kind = 'amqp';
  readonly topology: Topology;
  private readonly opts: ResolvedQueueOptions;
  private readonly conn: AmqpConnection;
  private readonly store: JobStateStore;
  private readonly consumers = new Set<AmqpConsumer>();
  private readonly host: AmqpConsumerHost;
  private readonly readyTimeoutMs: number;
  private readonly maxDeadScan: number;
  private closed = false;
  private closing: Promise<void> | undefined;
  private wasLost = false;

  constructor(options: AmqpQueueOptions) {
    super();
    this.opts = resolveQueueOptions(options);
    this.topology = topology(options.prefix ?? 'sightline', allRetryDelays(this.opts));
    this.store = options.stateStore ?? new MemoryJobStateStore();
    this.readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
    this.maxDeadScan = options.maxDeadScan ?? 10_000;
    // Nothing connects here: the first operation (or waitUntilReady) starts the connection.
    this.conn = new AmqpConnection({
      url: options.url,
      connectionName: options.connectionName ?? `sightline-${process.pid}`,
      reconnectBaseMs: options.reconnectBaseMs ?? 500,
      reconnectMaxMs: options.reconnectMaxMs ?? 30_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      publishTimeoutMs: options.publishTimeoutMs ?? 10_000,
      setup: (ch) => assertTopology(ch, this.topology, this.opts.maxLength),
    });
    this.conn.on('error', (err) => this.reportError(err));
    this.conn.on('lost', (err) => {
      this.wasLost = true;
      this.emit('disconnected', err);
    });
    this.conn.on('open', (model) => {
      for (const c of this.consumers) c.subscribe(model).catch((err) => this.reportError(err));
      if (this.wasLost) this.emit('reconnected');
    });
    this.host = this.makeHost();
  }

  async enqueue(input: EnqueueInput): Promise<EnqueueResult> {
    this.assertOpen();
    const now = Date.now();
    const job = validateEnqueue(input, now);
    await this.conn.start();
    // Fail fast while disconnected: the API answers 503 instead of holding the request.
    if (!this.conn.isOpen) throw queueUnavailable('not connected to the broker');
    const id = newJobId();
    // The record goes first, as `pending`: it claims the idempotency key, and it must
    // exist before a worker reports on the job. It turns `queued` once the broker
    // confirmed; a crash or a lost confirm leaves it `pending`.
    const { inserted, record } = await this.store.insert({
      id,
      line: job.line,
      priority: job.priority,
      state: 'pending',
      attempts: 0,
      idempotencyKey: job.idempotencyKey,
      deadline: job.deadline,
      lastError: null,
      deadReason: null,
      createdAt: now,
      updatedAt: now,
    });
    if (!inserted) {
      // The first submission's publish was never confirmed (its API died, or the
      // confirm was lost): publish this copy under the first id. A double publish
      // is harmless, as results are idempotent on the job id.
      if (record.state === 'pending') await this.publishJob(record.id, job, now);
      return { job_id: record.id, duplicate: true };
    }
    try {
      await this.publishJob(id, job, now);
    } catch (err) {
      // Definitely not queued (refused, unroutable, never sent): free the key for the
      // client's retry. When the outcome is unknown the record stays `pending`.
      if (!(err as { outcomeUnknown?: boolean }).outcomeUnknown) await this.store.delete(id).catch((e) => this.reportError(e));
      throw err;
    }
    return { job_id: id, duplicate: false };
  }

  private async publishJob(id: string, job: ReturnType<typeof validateEnqueue>, now: number): Promise<void> {
    try {
      await this.conn.publish(this.topology.exchange, routingKey(job.line), job.image, jobPublishOptions(id, job, now));
    } catch (err) {
      if (err instanceof Errors.QUEUE_FULL) throw queueFull(this.opts.maxLength);
      throw err;
    }
    await this.store.update(id, { state: 'queued', updatedAt: Date.now() }, 'pending').catch((e) => this.reportError(e));
  }

  async consume(handler: JobHandler, options: ConsumeOptions = {}): Promise<Consumer> {
    this.assertOpen();
    const consumer = new AmqpConsumer(this.host, handler, options.concurrency ?? 1);
    this.consumers.add(consumer);
    await this.conn.start();
    // While disconnected it subscribes on the next `open`; it stays registered either way.
    const model = this.conn.current;
    if (model) await consumer.subscribe(model).catch((err) => this.reportError(err));
    return consumer;
  }

  async getJob(id: string): Promise<JobInfo | undefined> {
    this.assertOpen();
    const info = await this.store.get(id);
    // The broker dead-letters an expired message without telling anyone: report the expiry from the deadline.
    if (info && (info.state === 'queued' || info.state === 'pending') && info.deadline !== null && info.deadline <= Date.now()) {
      return { ...info, state: 'dead', deadReason: 'expired', lastError: EXPIRED_MESSAGE };
    }
    return info && info.state === 'pending' ? { ...info, state: 'queued' } : info;
  }

  async stats(): Promise<QueueStats> {
    const t = this.topology;
    return this.withChannel(async (ch) => {
      const count = async (q: string) => (await ch.checkQueue(q)).messageCount;
      let delayed = 0;
      for (const q of t.wait.values()) delayed += await count(q);
      let inFlight = 0;
      for (const c of this.consumers) inFlight += c.inHand;
      return { ready: (await count(t.jobs)) + (await count(t.retry)), delayed, inFlight, dead: await count(t.dead) };
    });
  }

  async depth(): Promise<number> {
    const s = await this.stats();
    return s.ready + s.delayed;
  }

  async listDead(options: { limit?: number } = {}): Promise<DeadJob[]> {
    const limit = deadListLimit(options);
    return this.withChannel((ch) => browseDead(ch, this.topology.dead, limit));
  }

  async retryDead(id: string): Promise<boolean> {
    const found = await this.withChannel((ch) =>
      takeDead(ch, this.topology.dead, id, this.maxDeadScan, async (msg) => {
        // Recorded first: once published, a worker may take it and record `running` at once.
        const before = await this.store.get(id).catch(() => undefined);
        await this.record(id, { state: 'queued', attempts: 0, deadline: null, deadReason: null, updatedAt: Date.now() });
        try {
          // Straight into the retry queue: an admin's retry should not bounce off a full jobs queue.
          await this.conn.publish('', this.topology.retry, msg.content, reviveOptions(msg));
        } catch (err) {
          if (before)
            await this.record(id, {
              state: before.state,
              attempts: before.attempts,
              deadline: before.deadline,
              deadReason: before.deadReason,
              updatedAt: Date.now(),
            });
          throw err;
        }
      }),
    );
    return found !== undefined;
  }

  /** Empties the dead-letter queue. Their state records stay `dead` (a broker purge names no ids). */
  async purgeDead(): Promise<number> {
    return this.withChannel(async (ch) => (await ch.purgeQueue(this.topology.dead)).messageCount);
  }

  async waitUntilReady(): Promise<void> {
    this.assertOpen();
    await this.conn.ready(this.readyTimeoutMs);
  }

  isAvailable(): boolean {
    return !this.closed && this.conn.isOpen && !this.conn.isBlocked;
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown(() => Promise.all([...this.consumers].map((c) => c.stop({ graceMs: this.opts.closeGraceMs }))));
    return this.closing;
  }

  /**
   * Drops the connection at once without settling jobs in hand, as a crashed
   * process would: the broker redelivers them to other consumers.
   */
  abort(): Promise<void> {
    this.closing ??= this.shutdown(() => Promise.all([...this.consumers].map((c) => c.kill())));
    return this.closing;
  }

  private async shutdown(stopConsumers: () => Promise<unknown>): Promise<void> {
    this.closed = true;
    await stopConsumers();
    await this.conn.close();
    this.emit('close');
  }

  /** Runs `fn` on a short-lived channel, so that a failing admin call cannot close the publisher channel. */
  private async withChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
    this.assertOpen();
    await this.conn.start();
    const model = this.conn.current;
    if (!model) throw queueUnavailable('not connected to the broker');
    let ch: Channel;
    try {
      ch = await model.createChannel();
    } catch (err) {
      throw queueUnavailable(asError(err).message, err);
    }
    ch.on('error', () => {}); // reported through the rejected call instead
    try {
      return await fn(ch);
    } finally {
      await ch.close().catch(() => {});
    }
  }

  private assertOpen(): void {
    if (this.closed) throw queueClosed();
  }

  private reportError(err: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', asError(err));
  }

  private async record(id: string, patch: JobStatePatch): Promise<void> {
    try {
      await this.store.update(id, patch);
    } catch (err) {
      this.reportError(err);
    }
  }

  private makeHost(): AmqpConsumerHost {
    return {
      topology: this.topology,
      options: this.opts,
      current: () => this.conn.current,
      publish: (exchange, key, content, options) => this.conn.publish(exchange, key, content, options),
      record: (id, patch) => this.record(id, patch),
      lookup: (id) =>
        this.store.get(id).catch((err) => {
          this.reportError(err);
          return undefined;
        }),
      completed: (id) => this.emit('completed', id),
      retrying: (id, attempt, delay, err) => this.emit('retrying', id, attempt, delay, err),
      dead: (id, reason, message) => this.emit('dead', id, reason, message),
      reportError: (err) => this.reportError(err),
      removeConsumer: (c) => this.consumers.delete(c),
    };
  }
}
