import type { JobInfo, JobState } from '../job-queue.js';

/** A state change; fields left out keep their value. */
export type JobStatePatch = Partial<Pick<JobInfo, 'state' | 'attempts' | 'lastError' | 'deadReason' | 'deadline'>> & { updatedAt: number };

/**
 * Where the amqp back end keeps job states and idempotency keys, because a
 * broker cannot look a message up by id. Every API replica and worker must share
 * one store (e.g. a table in the result database); a per-process store only
 * suits a single process. The sqlite back end does not use it: its job table is
 * already such a store.
 *
 * Writes are best-effort bookkeeping: the broker holds the truth about delivery,
 * and a failed state write is reported as an `error` event, never a lost job.
 */
export interface JobStateStore {
  /**
   * Records a new job unless its idempotency key is already held, atomically
   * (a unique index, an INSERT … ON CONFLICT DO NOTHING). Returns the record
   * that holds the key: the new one when `inserted`, else the first job's.
   */
  insert(record: JobInfo): Promise<{ inserted: boolean; record: JobInfo }>;
  /**
   * Applies a transition. An unknown id is ignored (pruned, or never recorded);
   * with `onlyIfState`, so is a job that has moved on from that state.
   */
  update(id: string, patch: JobStatePatch, onlyIfState?: JobState): Promise<void>;
  get(id: string): Promise<JobInfo | undefined>;
  /** Forgets a job whose publish failed, which frees its idempotency key for the client's retry. */
  delete(id: string): Promise<void>;
}
