/** The answers of the job API (POST /v1/jobs, GET /v1/jobs/:id). */
import type { Priority } from './options.js';
import type { DetectionResult } from './results.js';

/** POST /v1/jobs (202). */
export interface SubmittedJob {
  job_id: string;
  status: 'queued';
  /** True when the idempotency key was taken already: `job_id` is the first job's. */
  duplicate: boolean;
}

/** `queued` also covers a job waiting out a retry backoff; `dead` is final (until retried from the dead letters). */
export type JobState = 'queued' | 'running' | 'done' | 'dead';

/** Why a job was dead-lettered: its handler failed every attempt, or its deadline passed before it ran. */
export type DeadReason = 'failed' | 'expired';

/** GET /v1/jobs/:id. */
export interface JobStatus {
  job_id: string;
  state: JobState;
  line: string;
  priority: Priority;
  /** Runs started so far. */
  attempts: number;
  created_at: string;
  updated_at: string;
  /** The last handler error, kept across retries. */
  last_error?: string;
  /** Why a dead job was dead-lettered. */
  dead_reason?: DeadReason;
  /** The stored result, when done (its `request_id` is the job id). */
  result?: DetectionResult;
}
