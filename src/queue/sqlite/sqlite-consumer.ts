import { randomUUID } from 'node:crypto';
import { HeldJobs, runHandler, type Outcome } from '../held-jobs.js';
import type { Consumer, Job, JobHandler, StopOptions } from '../job-queue.js';
import { rankToPriority, type JobRow } from './schema.js';

/** What a consumer needs from its queue: claim, renew, settle, give back. */
export interface SqliteConsumerHost {
  readonly visibilityTimeoutMs: number;
  readonly pollIntervalMs: number;
  claim(token: string, workerId: string): JobRow | undefined;
  /** Epoch ms of the earliest queued job (ready or delayed), or null. */
  nextDue(): number | null;
  renew(id: string, token: string): void;
  settle(job: Job, token: string, outcome: Outcome): void;
  release(id: string, token: string): void;
  reportError(err: unknown): void;
  removeConsumer(consumer: SqliteConsumer): void;
}

/**
 * Pulls jobs from the table while it has free slots. It sleeps until the next
 * job is due or the poll interval passes (whichever is first), and the queue
 * wakes it at once on an in-process enqueue or settle, so the poll interval only
 * matters for jobs enqueued by another process sharing the file.
 */
export class SqliteConsumer implements Consumer {
  private readonly held = new HeldJobs<string>();
  private timer: NodeJS.Timeout | undefined;
  private wakeScheduled = false;
  private stopping = false;
  private stopped: Promise<void> | undefined;

  constructor(
    private readonly host: SqliteConsumerHost,
    private readonly handler: JobHandler,
    private readonly concurrency: number,
    private readonly workerId: string,
  ) {}

  get inHand(): number {
    return this.held.size;
  }

  start(): void {
    this.pump();
  }

  /** Asks for a pump on the next turn of the event loop (coalesced). */
  wake(): void {
    if (this.stopping || this.wakeScheduled) return;
    this.wakeScheduled = true;
    setImmediate(() => {
      this.wakeScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.stopping) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    try {
      while (this.held.size < this.concurrency) {
        const token = randomUUID();
        const row = this.host.claim(token, this.workerId);
        if (!row) break;
        this.run(row, token);
      }
    } catch (err) {
      this.host.reportError(err); // e.g. SQLITE_BUSY beyond the busy timeout: try again at the next poll
    }
    if (this.held.size < this.concurrency) this.sleep();
  }

  private sleep(): void {
    let delay = this.host.pollIntervalMs;
    try {
      const due = this.host.nextDue();
      if (due !== null) delay = Math.min(delay, Math.max(0, due - Date.now()) + 1);
    } catch (err) {
      this.host.reportError(err);
    }
    // Kept referenced: a worker whose only activity is consuming must stay alive. stop() clears it.
    this.timer = setTimeout(() => this.pump(), delay);
  }

  private run(row: JobRow, token: string): void {
    const job: Job = {
      id: row.id,
      line: row.line,
      priority: rankToPriority(row.priority),
      image: row.payload ?? Buffer.alloc(0),
      contentType: row.content_type,
      options: JSON.parse(row.options) as Job['options'],
      attempt: row.attempts,
      createdAt: row.created_at,
      deadline: row.deadline,
    };
    this.held.track(job.id, job, token, async (held) => {
      // Renew well before expiry so that only a dead (or frozen) worker loses its lease.
      const heartbeat = setInterval(
        () => {
          try {
            this.host.renew(job.id, token);
          } catch (err) {
            this.host.reportError(err);
          }
        },
        Math.max(1, Math.floor(this.host.visibilityTimeoutMs / 3)),
      );
      heartbeat.unref();
      held.controller.signal.addEventListener('abort', () => clearInterval(heartbeat), { once: true });
      const outcome = await runHandler(this.handler, job, held.controller.signal);
      clearInterval(heartbeat);
      if (held.returned) return;
      try {
        this.host.settle(job, token, outcome);
      } catch (err) {
        this.host.reportError(err); // the lease runs out and the job comes back: nothing is lost
      }
      this.wake();
    });
  }

  stop(options: StopOptions = {}): Promise<void> {
    this.stopped ??= this.halt(options.graceMs, true);
    return this.stopped;
  }

  /** Stops at once without giving jobs back, as a crashed process would: their leases expire. */
  kill(): Promise<void> {
    this.stopped ??= this.halt(0, false);
    return this.stopped;
  }

  private async halt(graceMs: number | undefined, giveBack: boolean): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.held.drain(graceMs, async (held) => {
      if (giveBack) this.host.release(held.job.id, held.ref);
    });
    this.host.removeConsumer(this);
  }
}
