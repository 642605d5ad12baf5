import { SightlineError, parseRetryAfter } from './errors.js';
import { StreamConnection, type StreamOptions } from './stream.js';
import { sniffImageType, tusUpload, type UploadInput, type UploadOptions, type UploadResult } from './upload.js';
import type {
  CallOptions,
  DetectionResult,
  DetectOptions,
  InferenceOptions,
  JobStatus,
  LineList,
  SubmitJobOptions,
  SubmittedJob,
  WaitForJobOptions,
} from './types.js';
import { INFERENCE_OPTION_KEYS } from '../protocol/options.js';
import { edgeResize } from './edge-resize.js';

export interface SightlineClientOptions {
  /** The server, e.g. `http://127.0.0.1:8080` (a path prefix is kept: `https://gw/sightline`). */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>` on every request, WebSocket and upload. */
  apiKey?: string;
  /** Extra headers for every request. */
  headers?: Record<string, string>;
  /** Client-side timeout of each HTTP call in ms. Default 30 000. */
  timeoutMs?: number;
  /** A fetch implementation; default Node's global `fetch`. */
  fetch?: typeof fetch;
}

interface RequestSpec extends CallOptions {
  method: 'GET' | 'POST' | 'HEAD' | 'DELETE';
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  headers?: Record<string, string | undefined>;
  body?: Uint8Array;
}

const QUERY_KEYS = INFERENCE_OPTION_KEYS;

function inferenceQuery(options: InferenceOptions): Record<string, string | number | boolean | undefined> {
  const query: Record<string, string | number | boolean | undefined> = {};
  for (const key of QUERY_KEYS) query[key] = options[key];
  return query;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/**
 * The Sightline client: synchronous detection, async jobs, resumable uploads and the
 * WebSocket stream. Every failure is a {@link SightlineError}.
 *
 * @example
 * ```ts
 * import { readFile } from 'node:fs/promises';
 * import { SightlineClient } from 'sightline';
 *
 * const client = new SightlineClient({ baseUrl: 'http://127.0.0.1:8080' });
 * const result = await client.detect(await readFile('part.jpg'), { line: 'line-3', conf: 0.4 });
 * console.log(result.verdict, result.detections.map((d) => d.label));
 * ```
 */
export class SightlineClient {
  readonly baseUrl: string;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(options: SightlineClientOptions) {
    if (!options?.baseUrl) throw new TypeError('SightlineClient: baseUrl is required');
    const url = new URL(options.baseUrl); // throws on nonsense
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`SightlineClient: baseUrl must be http(s), not ${url.protocol}`);
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.headers = { ...(options.headers ?? {}) };
    if (options.apiKey) this.headers.authorization = `Bearer ${options.apiKey}`;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /**
   * POST /v1/detect: runs the model on one image and returns the result.
   *
   * @example
   * ```ts
   * const r = await client.detect(jpeg, { line: 'line-3', model: 'defects:1', deadlineMs: 500 });
   * // `check`: the image is outside the model's quality envelope, a person decides; not a pass.
   * if (r.verdict !== 'ok') reject(part);
   * ```
   * @throws SightlineError with the server's code (`INVALID_IMAGE`, `MODEL_NOT_FOUND`,
   *   `OVERLOADED` with `retryAfterMs`, …) or `NETWORK_ERROR`, `TIMEOUT`, `ABORTED`.
   */
  async detect(image: Uint8Array, options: DetectOptions = {}): Promise<DetectionResult> {
    if (options.edgeResize !== undefined) {
      const scaled = await edgeResize(image, options.edgeResize);
      const { edgeResize: _, ...rest } = options;
      if (!scaled.source) return this.detect(image, rest);
      return this.detect(scaled.image, {
        ...rest,
        source_width: scaled.source.width,
        source_height: scaled.source.height,
        ...(scaled.contentType ? { contentType: scaled.contentType } : {}),
      });
    }
    const { body } = await this.request({
      method: 'POST',
      path: '/v1/detect',
      query: inferenceQuery(options),
      headers: {
        'content-type': options.contentType ?? sniffImageType(image) ?? 'application/octet-stream',
        'x-request-timeout-ms': options.deadlineMs === undefined ? undefined : String(Math.max(1, Math.round(options.deadlineMs))),
      },
      body: image,
      ...callOptions(options),
    });
    return body as DetectionResult;
  }

  /**
   * POST /v1/jobs: queues the image durably and returns once the server has it.
   *
   * @example
   * ```ts
   * const { job_id } = await client.submitJob(jpeg, { line: 'line-3', idempotencyKey: `cam-7/${frameNo}` });
   * const result = await client.waitForJob(job_id, { timeoutMs: 30_000 });
   * ```
   */
  async submitJob(image: Uint8Array, options: SubmitJobOptions = {}): Promise<SubmittedJob> {
    const { body } = await this.request({
      method: 'POST',
      path: '/v1/jobs',
      query: inferenceQuery(options),
      headers: {
        'content-type': options.contentType ?? sniffImageType(image) ?? 'application/octet-stream',
        'idempotency-key': options.idempotencyKey,
        'x-request-timeout-ms': options.ttlMs === undefined ? undefined : String(Math.max(1, Math.round(options.ttlMs))),
      },
      body: image,
      ...callOptions(options),
    });
    const job = body as SubmittedJob;
    if (typeof job?.job_id !== 'string') throw new SightlineError({ code: 'BAD_RESPONSE', message: 'POST /v1/jobs answered without a job_id' });
    return { job_id: job.job_id, status: 'queued', duplicate: job.duplicate === true };
  }

  /** GET /v1/jobs/:id: the job's state, attempts, last error and, when done, its result. */
  async getJob(jobId: string, options: CallOptions = {}): Promise<JobStatus> {
    const { body } = await this.request({ method: 'GET', path: `/v1/jobs/${encodeURIComponent(jobId)}`, ...callOptions(options) });
    return body as JobStatus;
  }

  /** GET /v1/lines: every line and camera with its state (online, stale, offline) and figures. */
  async lines(options: CallOptions = {}): Promise<LineList> {
    const { body } = await this.request({ method: 'GET', path: '/v1/lines', ...callOptions(options) });
    return body as LineList;
  }

  /**
   * Polls a job until it is done and returns its result. The wait between polls starts
   * at `pollIntervalMs` and grows by `backoffFactor` up to `maxPollIntervalMs`.
   * Transient failures of a poll (network, 503) are ridden out until `timeoutMs`. It
   * returns or throws within about `timeoutMs` (a poll under way gets at least 1 s).
   *
   * @throws SightlineError `JOB_DEAD` (with `deadReason`, `lastError`) when the job went to
   *   the dead letters, `TIMEOUT` when `timeoutMs` passed, `ABORTED`, `JOB_NOT_FOUND`.
   */
  async waitForJob(jobId: string, options: WaitForJobOptions = {}): Promise<DetectionResult> {
    const timeoutMs = options.timeoutMs ?? 60_000;
    const maxInterval = options.maxPollIntervalMs ?? 2000;
    const factor = options.backoffFactor ?? 1.5;
    let interval = Math.min(options.pollIntervalMs ?? 100, maxInterval);
    const deadline = Date.now() + timeoutMs;
    let lastProblem: unknown;
    for (;;) {
      const left = deadline - Date.now();
      try {
        // A poll gets at least a second even at the very end: aborting requests mid-flight helps nobody.
        const job = await this.getJob(jobId, { signal: options.signal, timeoutMs: Math.min(this.timeoutMs, Math.max(1000, left)) });
        if (job.state === 'done' && job.result) return job.result;
        if (job.state === 'dead') {
          throw new SightlineError({
            code: 'JOB_DEAD',
            message: `job ${jobId} is dead (${job.dead_reason ?? 'unknown reason'})${job.last_error ? `: ${job.last_error}` : ''}`,
            status: 200,
            jobId,
            deadReason: job.dead_reason ?? null,
            lastError: job.last_error ?? null,
          });
        }
      } catch (err) {
        if (!(err instanceof SightlineError)) throw err;
        if (err.code === 'ABORTED' || !(err.retryable || err.code === 'TIMEOUT')) throw err;
        lastProblem = err;
      }
      const now = Date.now();
      if (now >= deadline) {
        throw new SightlineError({ code: 'TIMEOUT', message: `job ${jobId} was not done within ${timeoutMs} ms`, jobId, cause: lastProblem });
      }
      try {
        await sleep(Math.min(interval, deadline - now), options.signal);
      } catch (reason) {
        throw new SightlineError({ code: 'ABORTED', message: `waiting for job ${jobId} was aborted`, jobId, cause: reason });
      }
      interval = Math.min(maxInterval, interval * factor);
    }
  }

  /**
   * A tus resumable upload to /v1/uploads; the finished upload becomes a job.
   * `input` is bytes, a file path, or a readable stream. Keep the URL from
   * `onUploadUrl` to resume an interrupted upload later with `uploadUrl`.
   *
   * @example
   * ```ts
   * const { job_id } = await client.upload('/data/big-panel.png', {
   *   line: 'line-3',
   *   chunkSize: 1024 * 1024,
   *   onProgress: (sent, total) => console.log(`${sent}/${total}`),
   *   onUploadUrl: (url) => saveForLater(url),
   * });
   * const result = await client.waitForJob(job_id);
   * ```
   */
  upload(input: UploadInput, options: UploadOptions = {}): Promise<UploadResult> {
    return tusUpload(`${this.baseUrl}/v1/uploads`, this.headers, input, options, this.fetchImpl);
  }

  /**
   * Opens a /v1/stream WebSocket that reconnects and resubscribes by itself; see
   * {@link StreamConnection}.
   *
   * @example
   * ```ts
   * const conn = client.stream({ line: 'line-3', lines: ['line-3'] });
   * conn.on('result', (m) => console.log(m.id, m.result.verdict));
   * await conn.ready();
   * conn.send(jpeg); // returns the frame id
   * ```
   */
  stream(options: StreamOptions = {}): StreamConnection {
    return new StreamConnection(this.baseUrl, this.headers, options);
  }

  private async request(spec: RequestSpec): Promise<{ status: number; headers: Headers; body: unknown }> {
    const url = new URL(`${this.baseUrl}${spec.path}`);
    for (const [k, v] of Object.entries(spec.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: 'application/json', ...this.headers };
    for (const [k, v] of Object.entries(spec.headers ?? {})) if (v !== undefined) headers[k] = v;
    if (spec.requestId) headers['x-request-id'] = spec.requestId;

    const what = `${spec.method} ${url.pathname}`;
    if (spec.signal?.aborted) throw new SightlineError({ code: 'ABORTED', message: `${what} was aborted`, cause: spec.signal.reason });
    const timeoutMs = spec.timeoutMs ?? this.timeoutMs;
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new Error(`timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onAbort = () => controller.abort(spec.signal!.reason);
    spec.signal?.addEventListener('abort', onAbort, { once: true });

    if (spec.signal?.aborted) throw new SightlineError({ code: 'ABORTED', message: `${what} was aborted`, cause: spec.signal.reason });
    try {
      let res: Response;
      let text: string;
      try {
        res = await this.fetchImpl(url, {
          method: spec.method,
          headers,
          ...(spec.body ? { body: spec.body as Uint8Array<ArrayBuffer> } : {}),
          signal: controller.signal,
        });
        text = await res.text();
      } catch (err) {
        if (timedOut) throw new SightlineError({ code: 'TIMEOUT', message: `${what}: no answer within ${timeoutMs} ms`, cause: err });
        if (spec.signal?.aborted) throw new SightlineError({ code: 'ABORTED', message: `${what} was aborted`, cause: spec.signal.reason });
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        throw new SightlineError({ code: 'NETWORK_ERROR', message: `${what}: ${cause?.message ?? cause?.code ?? (err as Error).message}`, cause: err });
      }
      const requestId = res.headers.get('x-request-id');
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        body = undefined;
      }
      if (!res.ok) {
        const error = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
        throw new SightlineError({
          code: typeof error?.code === 'string' ? error.code : `HTTP_${res.status}`,
          message: typeof error?.message === 'string' ? error.message : `${what}: HTTP ${res.status} ${text.slice(0, 200)}`,
          status: res.status,
          retryAfterMs: parseRetryAfter(res.headers.get('retry-after')),
          requestId,
        });
      }
      if (body === undefined) {
        throw new SightlineError({ code: 'BAD_RESPONSE', message: `${what}: HTTP ${res.status} answered no JSON`, status: res.status, requestId });
      }
      return { status: res.status, headers: res.headers, body };
    } finally {
      clearTimeout(timer);
      spec.signal?.removeEventListener('abort', onAbort);
    }
  }
}

function callOptions(options: CallOptions): CallOptions {
  return { timeoutMs: options.timeoutMs, signal: options.signal, requestId: options.requestId };
}
