import { EventEmitter } from 'node:events';
import BetterSqlite3, { type Database } from 'better-sqlite3';
import { isUnrecoverable, queueClosed } from '../errors.js';
import type { Outcome } from '../held-jobs.js';
import type {
  ConsumeOptions,
  Consumer,
  DeadJob,
  EnqueueInput,
  EnqueueResult,
  Job,
  JobHandler,
  JobInfo,
  JobQueue,
  JobQueueEvents,
  QueueStats,
} from '../job-queue.js';
import {
  deadListLimit,
  defaultWorkerId,
  newJobId,
  resolveQueueOptions,
  retryDelayMs,
  validateEnqueue,
  type QueueOptions,
  type ResolvedQueueOptions,
} from '../options.js';
import { EXPIRED_MESSAGE, JobTable } from './job-table.js';
import { migrate, rowToDead, rowToInfo } from './schema.js';
import { SqliteConsumer, type SqliteConsumerHost } from './sqlite-consumer.js';

export interface SqliteQueueOptions extends QueueOptions {
  /**
   * Database file, or `:memory:` (one process only). Its directory must exist.
   * @example './data/queue.sqlite'
   */
  path: string;
  /** A running job whose lease is not renewed for this long goes back to the queue (its worker died). Default 30 000 ms. */
  visibilityTimeoutMs?: number;
  /** How often an idle consumer looks for jobs enqueued by other processes. Default 250 ms. */
  pollIntervalMs?: number;
  /** How often expired deadlines and leases are swept (also before stats()). Default 1000 ms. */
  sweepIntervalMs?: number;
  /** How long a done job's row (state and idempotency key) is kept. Default 24 h. */
  retainDoneMs?: number;
}

const PRUNE_INTERVAL_MS = 60_000;

/**
 * The embedded back end: one SQLite table in WAL mode, leases with a visibility
 * timeout instead of acks, so any number of processes sharing the file can
 * consume. better-sqlite3 is synchronous; every call is a short indexed
 * statement, so the event loop is held for microseconds.
 */
export class SqliteJobQueue extends EventEmitter<JobQueueEvents> implements JobQueue {
  readonly kind = 'sqlite';
  private readonly opts: ResolvedQueueOptions;
  private readonly db: Database;
  private readonly table: JobTable;
  private readonly consumers = new Set<SqliteConsumer>();
  private readonly host: SqliteConsumerHost;
  private readonly sweepIntervalMs: number;
  private readonly retainDoneMs: number;
  private lastSweep = 0;
  private lastPrune = 0;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(options: SqliteQueueOptions) {
    super();
    this.opts = resolveQueueOptions(options);
    this.sweepIntervalMs = options.sweepIntervalMs ?? 1000;
    this.retainDoneMs = options.retainDoneMs ?? 24 * 3600_000;
    // Opening is synchronous, so nothing async starts here.
    this.db = new BetterSqlite3(options.path);
    migrate(this.db);
    this.table = new JobTable(this.db);
    this.host = this.makeHost(options.visibilityTimeoutMs ?? 30_000, options.pollIntervalMs ?? 250);
  }

  async enqueue(input: EnqueueInput): Promise<EnqueueResult> {
    this.assertOpen();
    const now = Date.now();
    const job = validateEnqueue(input, now);
    const { id, duplicate } = this.table.insert(newJobId(), job, now, this.opts.maxLength);
    if (!duplicate) for (const c of this.consumers) c.wake();
    return { job_id: id, duplicate };
  }

  async consume(handler: JobHandler, options: ConsumeOptions = {}): Promise<Consumer> {
    this.assertOpen();
    const consumer = new SqliteConsumer(this.host, handler, options.concurrency ?? 1, options.workerId ?? defaultWorkerId());
    this.consumers.add(consumer);
    consumer.start();
    return consumer;
  }

  async getJob(id: string): Promise<JobInfo | undefined> {
    this.assertOpen();
    const row = this.table.get(id);
    if (!row) return undefined;
    const info = rowToInfo(row);
    // Expiry is swept periodically; report it as soon as it is true.
    if (info.state === 'queued' && info.deadline !== null && info.deadline <= Date.now()) {
      return { ...info, state: 'dead', deadReason: 'expired', lastError: EXPIRED_MESSAGE };
    }
    return info;
  }

  async stats(): Promise<QueueStats> {
    this.assertOpen();
    this.sweep(Date.now(), true);
    return this.table.stats(Date.now());
  }

  async depth(): Promise<number> {
    const s = await this.stats();
    return s.ready + s.delayed;
  }

  async listDead(options: { limit?: number } = {}): Promise<DeadJob[]> {
    this.assertOpen();
    return this.table.listDead(deadListLimit(options)).map(rowToDead);
  }

  async retryDead(id: string): Promise<boolean> {
    this.assertOpen();
    const ok = this.table.retryDead(id, Date.now());
    if (ok) for (const c of this.consumers) c.wake();
    return ok;
  }

  async purgeDead(): Promise<number> {
    this.assertOpen();
    return this.table.purgeDead();
  }

  async waitUntilReady(): Promise<void> {
    this.assertOpen();
  }

  isAvailable(): boolean {
    return !this.closed;
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown(async () => {
      await Promise.all([...this.consumers].map((c) => c.stop({ graceMs: this.opts.closeGraceMs })));
    });
    return this.closing;
  }

  /**
   * Closes at once without giving back jobs in hand, as if the process had died:
   * their leases expire and another worker runs them. For crash tests and for a
   * fatal-error exit path.
   */
  abort(): Promise<void> {
    this.closing ??= this.shutdown(async () => {
      await Promise.all([...this.consumers].map((c) => c.kill()));
    });
    return this.closing;
  }

  private async shutdown(stopConsumers: () => Promise<void>): Promise<void> {
    this.closed = true;
    await stopConsumers();
    this.db.close();
    this.emit('close');
  }

  private assertOpen(): void {
    if (this.closed) throw queueClosed();
  }

  private reportError(err: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', err instanceof Error ? err : new Error(String(err)));
  }

  /** Runs the expiry/lease sweep when it is due (or `force`), and prunes old done rows now and then. */
  private sweep(now: number, force = false): void {
    if (force || now - this.lastSweep >= this.sweepIntervalMs) {
      this.lastSweep = now;
      const moved = this.table.sweep(now, this.opts.maxAttempts);
      for (const id of moved.expired) this.emit('dead', id, 'expired', EXPIRED_MESSAGE);
      for (const id of moved.lost) this.emit('dead', id, 'failed', null);
    }
    if (now - this.lastPrune >= PRUNE_INTERVAL_MS) {
      this.lastPrune = now;
      this.table.prune(now - this.retainDoneMs);
    }
  }

  private settle(job: Job, token: string, outcome: Outcome): void {
    const now = Date.now();
    if (outcome.ok) {
      if (this.table.complete(job.id, token, now)) this.emit('completed', job.id);
      return;
    }
    const message = outcome.err.message;
    if (isUnrecoverable(outcome.err) || job.attempt >= this.opts.maxAttempts) {
      if (this.table.bury(job.id, token, now, message)) this.emit('dead', job.id, 'failed', message);
      return;
    }
    const delay = retryDelayMs(this.opts, job.attempt);
    if (this.table.retry(job.id, token, now, now + delay, message)) {
      this.emit('retrying', job.id, job.attempt, delay, outcome.err);
      for (const c of this.consumers) c.wake(); // so a sleeping consumer re-plans around the new due time
    }
  }

  private makeHost(visibilityTimeoutMs: number, pollIntervalMs: number): SqliteConsumerHost {
    return {
      visibilityTimeoutMs,
      pollIntervalMs,
      claim: (token, workerId) => {
        if (this.closed) return undefined;
        const now = Date.now();
        this.sweep(now);
        return this.table.claim(now, visibilityTimeoutMs, token, workerId);
      },
      nextDue: () => (this.closed ? null : this.table.nextDue()),
      // Jobs in hand still settle while close() waits for them; only a closed database stops them.
      renew: (id, token) => {
        if (this.db.open) this.table.renew(id, token, Date.now() + visibilityTimeoutMs);
      },
      settle: (job, token, outcome) => {
        if (this.db.open) this.settle(job, token, outcome);
      },
      release: (id, token) => {
        if (this.db.open) this.table.release(id, token, Date.now());
      },
      reportError: (err) => this.reportError(err),
      removeConsumer: (consumer) => this.consumers.delete(consumer),
    };
  }
}
