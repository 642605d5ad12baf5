import type { DetectionResult } from '../events/event-bus.js';

export type { DetectionResult };
export type { SightlineEvent, ResultEvent, JobStatusEvent } from '../events/event-bus.js';

export type Priority = 'high' | 'normal' | 'low';

/**
 * The inference options of POST /v1/detect, POST /v1/jobs, uploads and stream frames,
 * spelled as on the wire (the query parameters).
 */
export interface InferenceOptions {
  /** Production line id (1–64 of `A–Z a–z 0–9 . _ -`); default `default`. */
  line?: string;
  /** `name` or `name:version`; default: the server's default model. */
  model?: string;
  /** Lowest score kept, in [0, 1]; default: the model's. */
  conf?: number;
  /** NMS IoU threshold, in [0, 1]; default: the model's. */
  iou?: number;
  /** At most this many detections. */
  max_det?: number;
  /** Class-agnostic NMS. */
  agnostic?: boolean;
  priority?: Priority;
}

/** Per-call options of every HTTP method. */
export interface CallOptions {
  /** Client-side timeout of this call in ms; default the client's `timeoutMs`. */
  timeoutMs?: number;
  /** Aborts the call (SightlineError `ABORTED`). */
  signal?: AbortSignal;
  /** Sent as `X-Request-Id` (1–128 of `A–Z a–z 0–9 . _ : -`); the server makes one up otherwise. */
  requestId?: string;
}

export interface DetectOptions extends InferenceOptions, CallOptions {
  /** The server-side deadline (`X-Request-Timeout-Ms`): past it the request fails with `DEADLINE_EXCEEDED`. */
  deadlineMs?: number;
  /** Content type of the body; default sniffed (JPEG, PNG, WebP), else `application/octet-stream`. */
  contentType?: string;
}

export interface SubmitJobOptions extends InferenceOptions, CallOptions {
  /** `Idempotency-Key`: a repeated key returns the first job (`duplicate: true`). */
  idempotencyKey?: string;
  /** The job's time to live (`X-Request-Timeout-Ms`): not started by then, it is dead-lettered as `expired`. */
  ttlMs?: number;
  contentType?: string;
}

export interface SubmittedJob {
  job_id: string;
  status: 'queued';
  /** True when the idempotency key was taken already: `job_id` is the first job's. */
  duplicate: boolean;
}

/** `queued` also covers a job waiting out a retry backoff; `dead` is final (until retried from the dead letters). */
export type JobState = 'queued' | 'running' | 'done' | 'dead';

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
  dead_reason?: 'failed' | 'expired';
  /** The stored result, when done (its `request_id` is the job id). */
  result?: DetectionResult;
}

export interface WaitForJobOptions {
  /** Give up (SightlineError `TIMEOUT`) after this long. Default 60 000 ms. */
  timeoutMs?: number;
  /** First wait between polls. Default 100 ms. */
  pollIntervalMs?: number;
  /** The wait grows by `backoffFactor` per poll up to this. Default 2000 ms. */
  maxPollIntervalMs?: number;
  /** Default 1.5. */
  backoffFactor?: number;
  signal?: AbortSignal;
}
