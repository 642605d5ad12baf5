import type { JobInfo, JobState } from '../job-queue.js';
import type { JobStatePatch, JobStateStore } from './job-state-store.js';

/**
 * A JobStateStore in this process's memory: for tests, and for a single
 * process that both enqueues and consumes. Finished jobs are forgotten after
 * `retainFinishedMs` so that it does not grow without bound.
 */
export class MemoryJobStateStore implements JobStateStore {
  private readonly jobs = new Map<string, JobInfo>();
  private readonly keys = new Map<string, string>();
  private lastPrune = 0;

  constructor(private readonly retainFinishedMs = 24 * 3600_000) {}

  async insert(record: JobInfo): Promise<{ inserted: boolean; record: JobInfo }> {
    this.prune(record.createdAt);
    if (record.idempotencyKey !== null) {
      const holder = this.jobs.get(this.keys.get(record.idempotencyKey) ?? '');
      if (holder) return { inserted: false, record: { ...holder } };
      this.keys.set(record.idempotencyKey, record.id);
    }
    this.jobs.set(record.id, { ...record });
    return { inserted: true, record: { ...record } };
  }

  async update(id: string, patch: JobStatePatch, onlyIfState?: JobState): Promise<void> {
    const job = this.jobs.get(id);
    if (job && (onlyIfState === undefined || job.state === onlyIfState)) Object.assign(job, patch);
  }

  async get(id: string): Promise<JobInfo | undefined> {
    const job = this.jobs.get(id);
    return job && { ...job };
  }

  async delete(id: string): Promise<void> {
    const job = this.jobs.get(id);
    if (!job) return;
    this.jobs.delete(id);
    if (job.idempotencyKey !== null && this.keys.get(job.idempotencyKey) === id) this.keys.delete(job.idempotencyKey);
  }

  private prune(now: number): void {
    if (now - this.lastPrune < 60_000) return;
    this.lastPrune = now;
    for (const job of this.jobs.values()) {
      if ((job.state === 'done' || job.state === 'dead') && job.updatedAt < now - this.retainFinishedMs) void this.delete(job.id);
    }
  }
}
