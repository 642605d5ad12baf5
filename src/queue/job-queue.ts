import type { EventEmitter } from 'node:events';
import type { Priority } from '../protocol/options.js';

export type { Priority };

/**
 * Where a job stands. `queued` covers both "waiting for a worker" and "waiting
 * out a retry backoff"; `dead` is final until `retryDead()` (see `deadReason`).
 */
export type JobState = 'queued' | 'running' | 'done' | 'dead' | 'pending';
// `pending` exists only inside the amqp back end's state store, while the broker
// has not confirmed a job's publish; getJob reports it as `queued`.

/** Why a job was dead-lettered: its handler failed `maxAttempts` times, or its deadline passed before it ran. */
export type DeadReason = 'failed' | 'expired';

/** Detection options carried with a job (model, conf, iou, …): a small JSON object. */
export type JobOptions = Record<string, unknown>;

export interface EnqueueInput {
  /** Production line id; also the AMQP routing key suffix (`detect.<line>`). */
  line: string;
  /** Default `normal`. */
  priority?: Priority;
  /** The image bytes themselves, so that a worker on another machine needs no shared disk. */
  image: Buffer;
  /** The image's media type, e.g. `image/jpeg`. */
  contentType: string;
  /** Must survive `JSON.stringify`. */
  options?: JobOptions;
  /**
   * A repeated key returns the first job (`duplicate: true`) instead of queueing
   * another: a client may retry a POST whose answer it never saw.
   * @example 'cam-7/2026-11-23T21:00:00.123Z'
   */
  idempotencyKey?: string;
  /** Time to live from now; a job not started by then is dead-lettered with reason `expired`. */
  ttlMs?: number;
  /** Absolute deadline (epoch ms); with `ttlMs` too, the earlier one wins. */
  deadline?: number;
}

export interface EnqueueResult {
  job_id: string;
  /** True when the idempotency key was already taken: `job_id` is the first job's. */
  duplicate: boolean;
}

/** What a worker's handler receives. */
export interface Job {
  id: string;
  line: string;
  priority: Priority;
  image: Buffer;
  contentType: string;
  options: JobOptions;
  /** 1 on the first run, 2 on the first retry, … */
  attempt: number;
  /** Epoch ms. */
  createdAt: number;
  /** Epoch ms, or null when the job never expires. */
  deadline: number | null;
}

/** A job's state as `getJob()` reports it (no payload). */
export interface JobInfo {
  id: string;
  line: string;
  priority: Priority;
  state: JobState;
  /** Runs started so far. */
  attempts: number;
  idempotencyKey: string | null;
  deadline: number | null;
  /** The last handler error, kept across retries and in the dead-letter queue. */
  lastError: string | null;
  deadReason: DeadReason | null;
  createdAt: number;
  updatedAt: number;
}

/** A dead-lettered job as `listDead()` shows it. */
export interface DeadJob {
  id: string;
  line: string;
  priority: Priority;
  attempts: number;
  reason: DeadReason;
  lastError: string | null;
  createdAt: number;
  /** Epoch ms when it was dead-lettered. */
  diedAt: number;
}

export interface QueueStats {
  /** Waiting for a worker now. */
  ready: number;
  /** Waiting out a retry backoff. */
  delayed: number;
  /**
   * Being processed. sqlite: by any worker sharing the file; amqp: by this
   * instance's consumers only (AMQP does not report unacknowledged counts; the
   * management API does).
   */
  inFlight: number;
  dead: number;
}

/**
 * A handler resolves to acknowledge the job and throws to fail this attempt.
 * `signal` aborts when the consumer gives the job back (stop() grace ran out,
 * close()); whatever the handler does afterwards no longer counts.
 */
export type JobHandler = (job: Job, signal: AbortSignal) => Promise<void>;

export interface ConsumeOptions {
  /** Jobs handled at once by this consumer (amqp: the channel prefetch). Default 1. */
  concurrency?: number;
  /** Names the worker in sqlite leases (diagnostics). Default `<hostname>:<pid>:<random>`. */
  workerId?: string;
}

export interface StopOptions {
  /**
   * How long to wait for jobs in hand to finish. Jobs still running after it are
   * given back to the queue unharmed (their attempt is not counted) for another
   * worker, and their handlers' signals abort. Default: wait as long as they take.
   */
  graceMs?: number;
}

export interface Consumer {
  /** Jobs whose handler is running now. */
  readonly inHand: number;
  /** Stops taking jobs, then waits for or gives back those in hand. Idempotent. */
  stop(options?: StopOptions): Promise<void>;
}

/**
 * Events, BullMQ style. `error` reports trouble the queue recovers from by itself
 * (a lost broker connection, a failed state write); without a listener it is
 * dropped rather than thrown, because none of it is fatal.
 */
export interface JobQueueEvents {
  error: [err: Error];
  close: [];
  /** amqp: the broker connection was lost; enqueue answers QUEUE_UNAVAILABLE until `reconnected`. */
  disconnected: [err: Error | undefined];
  reconnected: [];
  completed: [jobId: string];
  retrying: [jobId: string, attempt: number, delayMs: number, err: Error];
  dead: [jobId: string, reason: DeadReason, message: string | null];
}

/**
 * A durable job queue for the async detection path (POST /v1/jobs → worker).
 * Delivery is at-least-once: a job whose worker dies is run again, so handlers
 * must be idempotent (storing a result under the job id is).
 */
export interface JobQueue extends EventEmitter<JobQueueEvents> {
  /** `sqlite` or `amqp`. */
  readonly kind: string;
  /**
   * Resolves once the job is durable (sqlite: committed; amqp: confirmed by the
   * broker). Throws QUEUE_FULL (queue at its max length), QUEUE_UNAVAILABLE
   * (broker unreachable), INVALID_JOB or QUEUE_CLOSED.
   */
  enqueue(input: EnqueueInput): Promise<EnqueueResult>;
  /** Starts a consumer; it keeps consuming (across reconnects) until stopped. */
  consume(handler: JobHandler, options?: ConsumeOptions): Promise<Consumer>;
  /** undefined for an unknown (or purged/pruned) job. */
  getJob(id: string): Promise<JobInfo | undefined>;
  stats(): Promise<QueueStats>;
  /** ready + delayed: the jobs waiting for a worker, the autoscaling signal. */
  depth(): Promise<number>;
  /** Oldest first. */
  listDead(options?: { limit?: number }): Promise<DeadJob[]>;
  /** Puts a dead job back in the queue with its attempts reset and no deadline; false if no such dead job. */
  retryDead(id: string): Promise<boolean>;
  /** Deletes every dead job; returns how many. */
  purgeDead(): Promise<number>;
  /** Resolves when usable (amqp: connected and topology declared); throws QUEUE_UNAVAILABLE if it cannot get there. */
  waitUntilReady(): Promise<void>;
  /** True while enqueue can succeed right now (for /readyz). */
  isAvailable(): boolean;
  /** Stops every consumer (graceMs from the queue options), releases connections, emits `close`. Idempotent. */
  close(): Promise<void>;
}
