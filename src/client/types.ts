import type { InferenceOptions } from '../protocol/options.js';
import type { EdgeResize } from './edge-resize.js';

// The wire contract (src/protocol) is the SDK's vocabulary: results, events, options and job answers.
export type {
  Box,
  Detection,
  DetectionResult,
  ResultSource,
  StageTimings,
  Verdict,
  Review,
  ReviewBox,
  ReviewInput,
  ReviewStatus,
} from '../protocol/results.js';
export type { SightlineEvent, ResultEvent, JobStatusEvent, CameraStateEvent } from '../protocol/events.js';
export type { CameraState, CameraStatus, LineList, LineStatus } from '../protocol/lines.js';
export type { InferenceOptions, Priority } from '../protocol/options.js';
export type { EdgeResize } from './edge-resize.js';
export type { DeadReason, JobState, JobStatus, SubmittedJob } from '../protocol/jobs.js';

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
  /**
   * Scale the image down here to fit this size (the model's input, e.g. 640), aspect ratio
   * kept, and send the original's size with it: boxes come back in the original's pixels.
   * An image that already fits is sent as it is. See docs/sdk.md#edge-resize.
   */
  edgeResize?: EdgeResize;
}

export interface SubmitJobOptions extends InferenceOptions, CallOptions {
  /** `Idempotency-Key`: a repeated key returns the first job (`duplicate: true`). */
  idempotencyKey?: string;
  /** The job's time to live (`X-Request-Timeout-Ms`): not started by then, it is dead-lettered as `expired`. */
  ttlMs?: number;
  contentType?: string;
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
