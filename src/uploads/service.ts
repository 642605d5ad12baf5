import { existsSync, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import { Counter } from 'prom-client';
import { FileStore } from '@tus/file-store';
import { EXPOSED_HEADERS, Server as TusServer, TUS_RESUMABLE, type Upload } from '@tus/server';
import type { Config } from '../config/schema.js';
import { uploadsDir } from '../config/locations.js';
import { corsOrigins, originAllowed } from '../config/cors-origins.js';
import { DEFAULT_CAMERA } from '../protocol/options.js';
import { Errors, toApiError, type ApiError } from '../errors.js';
import { carriesRetryAfter } from '../protocol/errors.js';
import { inspectImage } from '../inference/preprocess.js';
import type { Metrics } from '../metrics/metrics.js';
import type { JobQueue } from '../queue/index.js';
import { FinishedUploads, type FinishedUpload } from './finished.js';
import { invalidTusHeaders } from './headers.js';
import { MetadataError, checkMetadataEncoding, jobRequestFromMetadata, stringifyMetadata } from './metadata.js';

export const UPLOADS_PATH = '/v1/uploads';
/** What the naming function makes: 16 random bytes in hex. Anything else is no upload of ours. */
export const UPLOAD_ID = /^[0-9a-f]{32}$/;
export const JOB_ID_HEADER = 'Sightline-Job-Id';
export const JOB_LOCATION_HEADER = 'Sightline-Job-Location';
/** The queue's idempotency key for an upload: a retried finish never makes a second job. */
const OWN_EXPOSED_HEADERS = [JOB_ID_HEADER, JOB_LOCATION_HEADER, 'X-Request-Id'];
/** What tus sends on its own answers, for the answers made here (the allowed origin is added per request). */
const BASE_ANSWER_HEADERS = {
  'Tus-Resumable': TUS_RESUMABLE,
  'Access-Control-Expose-Headers': [EXPOSED_HEADERS, ...OWN_EXPOSED_HEADERS].join(', '),
};
export const idempotencyKeyFor = (uploadId: string) => `upload:${uploadId}`;

export type UploadOutcome = 'created' | 'finished' | 'rejected' | 'failed' | 'expired' | 'terminated';

export interface UploadStatus {
  upload_id: string;
  /** uploading: bytes missing; complete: all bytes in, no job yet (the queue refused it: retry); finished: a job holds the image. */
  state: 'uploading' | 'complete' | 'finished';
  offset: number;
  length: number | null;
  metadata: Record<string, string | null>;
  expires_at?: string;
  job_id?: string;
  job_location?: string;
}

export interface UploadServiceDeps {
  config: Config;
  queue: JobQueue;
  metrics: Metrics;
  logger: FastifyBaseLogger;
  /** Resolves the model a job names (throws MODEL_NOT_FOUND / NO_DEFAULT_MODEL), so a typo is refused at creation, not dead-lettered later. */
  checkModel: (model: string | undefined) => void;
  /** Told of each job an upload becomes, by line and camera. */
  onJob?: (line: string, camera: string) => void;
}

/** Sightline's stable error for a tus status code (tus answers in plain text); the status stays tus's. */
export function tusError(status: number, text: string, maxBytes: number): ApiError {
  const message = text.trim() || `HTTP ${status}`;
  const as = (err: Error): ApiError => ({ ...toApiError(err), statusCode: status });
  switch (status) {
    case 404:
    case 410:
      return as(new Errors.UPLOAD_NOT_FOUND(status === 410 ? 'at this URL any more (expired or deleted)' : 'at this URL'));
    case 409:
      return as(new Errors.UPLOAD_CONFLICT('Upload-Offset must equal the offset the server has (ask with HEAD)'));
    case 413:
      return /maximum/i.test(message)
        ? as(new Errors.UPLOAD_TOO_LARGE(maxBytes))
        : { statusCode: status, code: 'UPLOAD_TOO_LARGE', message: `${message}: the body goes past the declared Upload-Length` };
    case 423:
      return as(new Errors.UPLOAD_CONFLICT(`the upload is locked (${message})`));
  }
  if (status >= 500 && status !== 501) return { ...toApiError(undefined), statusCode: status };
  // 400, 403 (missing header), 412 (Tus-Resumable), 415, 501 (unsupported extension), …
  return as(new Errors.INVALID_UPLOAD(message));
}

/**
 * tus resumable uploads (FileStore on local disk) that turn into jobs when their
 * last byte arrives. Transport-neutral: `handle` takes and returns Web
 * Request/Response; the Fastify route adapts.
 */
export class UploadService {
  readonly dir: string;
  private core: { store: FileStore; tus: TusServer; finished: FinishedUploads } | undefined;
  private readonly counter: Counter<'outcome'>;
  private readonly finishing = new Map<string, Promise<FinishedUpload>>();
  private readonly errors = new WeakMap<Response, ApiError>();
  /**
   * creation-with-upload: tus reads the upload again after onUploadFinish (for
   * Upload-Expires), so the bytes of an upload finished by its POST stay until
   * that POST is answered. Maps the id to whether they are to go then.
   */
  private readonly heldUntilAnswered = new Map<string, boolean>();
  private readonly finishedByPost = new WeakMap<Request, string>();
  private readonly corsOrigins: string[];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: UploadServiceDeps) {
    const { config } = deps;
    this.dir = uploadsDir(config);
    this.corsOrigins = corsOrigins(config.cors_origins);
    const registry = deps.metrics.registry;
    this.counter =
      (registry.getSingleMetric('sightline_uploads_total') as Counter<'outcome'> | undefined) ??
      new Counter({
        name: 'sightline_uploads_total',
        help: 'Resumable uploads (/v1/uploads) by outcome: created, finished (a job was made), rejected, failed (queue unavailable, retryable), expired, terminated.',
        labelNames: ['outcome'] as const,
        registers: [registry],
      });
  }

  get store(): FileStore {
    return this.open().store;
  }

  get tus(): TusServer {
    return this.open().tus;
  }

  get finished(): FinishedUploads {
    return this.open().finished;
  }

  /**
   * The directory, store and tus server come with the first use, so that a server
   * nobody uploads to never touches the disk (or fails to start on a read-only one).
   */
  private open() {
    if (this.core) return this.core;
    const { config, logger } = this.deps;
    // FileStore creates its folder asynchronously and throws from a callback on failure: do it first.
    mkdirSync(this.dir, { recursive: true });
    const finished = new FinishedUploads(this.dir);
    const store = new FileStore({ directory: this.dir, expirationPeriodInMilliseconds: config.upload_expiry_ms });
    const tus = new TusServer({
      path: UPLOADS_PATH,
      datastore: store,
      maxSize: config.upload_max_bytes,
      relativeLocation: true,
      exposedHeaders: OWN_EXPOSED_HEADERS,
      // tus answers any origin by default; uploads follow cors_origins like every other route (none: CORS off).
      allowedOrigins: (origin) => originAllowed(this.corsOrigins, origin),
      namingFunction: () => randomBytes(16).toString('hex'),
      // tus already refuses ids holding '/', '\\' or NUL; allow only our own shape.
      getFileIdFromRequest: (_req, lastPath) => (lastPath !== undefined && UPLOAD_ID.test(lastPath) ? lastPath : undefined),
      onUploadCreate: async (req, upload) => {
        try {
          checkMetadataEncoding(req.headers.get('upload-metadata'));
          const request = jobRequestFromMetadata(upload.metadata, config.max_detections_limit);
          this.deps.checkModel(request.options.model);
        } catch (err) {
          if (err instanceof MetadataError)
            throw { status_code: 400, body: jsonError({ statusCode: 400, code: 'INVALID_UPLOAD', message: new Errors.INVALID_UPLOAD(err.message).message }) };
          const api = toApiError(err);
          if (api.code !== 'INTERNAL_ERROR') throw { status_code: api.statusCode, body: jsonError(api) };
          throw err;
        }
        return {};
      },
      onUploadFinish: async (req, upload) => {
        const viaPost = req.method === 'POST';
        if (viaPost) {
          this.heldUntilAnswered.set(upload.id, false);
          this.finishedByPost.set(req, upload.id);
        }
        try {
          const record = await this.finish(upload.id);
          return { headers: jobHeaders(record.job_id) };
        } catch (err) {
          const api = toApiError(err);
          if (api.code === 'INTERNAL_ERROR') logger.error({ event: 'upload_error', upload_id: upload.id, err }, `finishing upload ${upload.id} failed`);
          // A refused image is never coming back; a busy queue is worth retrying (the upload is kept).
          // tus names the upload only on a 201: a POST refused by a busy queue names it here, so that
          // HEAD or the final PATCH can retry like after a PATCH.
          const kept = viaPost && this.heldUntilAnswered.get(upload.id) === false;
          return {
            status_code: api.statusCode,
            headers: { ...errorHeaders(api), ...(kept ? { Location: `${UPLOADS_PATH}/${upload.id}` } : {}) },
            body: jsonError(api),
          };
        }
      },
      onResponseError: (req, err) => {
        if (err instanceof Error) logger.error({ event: 'upload_error', err, method: req.method }, `upload ${req.method} failed: ${err.message}`);
        return undefined;
      },
    });
    this.core = { store, tus, finished };
    return this.core;
  }

  /** Answers one tus request; errors leave as Sightline JSON with the tus headers kept. */
  async handle(req: Request, id: string | undefined): Promise<Response> {
    let res: Response;
    try {
      res = (id !== undefined && (await this.answerFinished(req, id))) || (await this.tus.handleWeb(req));
    } finally {
      await this.releaseHeld(req);
    }
    res = await this.toJsonError(res);
    // A POST that carried the whole upload was created, then finished or rejected (counted by finish).
    if (req.method === 'POST') this.count(res.status === 201 || this.finishedByPost.has(req) ? 'created' : res.status >= 400 ? 'rejected' : undefined);
    if (req.method === 'DELETE' && res.status === 204) this.count('terminated');
    return res;
  }

  /** Drops the bytes of an upload its POST finished, once tus is done with them (see heldUntilAnswered). */
  private async releaseHeld(req: Request): Promise<void> {
    const id = this.finishedByPost.get(req);
    if (id === undefined) return;
    const drop = this.heldUntilAnswered.get(id);
    this.heldUntilAnswered.delete(id);
    if (drop) await this.dropBytes(id);
  }

  /** Deletes an upload's bytes, or marks them to go once the POST that holds them is answered. */
  private async dropBytes(id: string): Promise<void> {
    if (this.heldUntilAnswered.has(id)) {
      this.heldUntilAnswered.set(id, true);
      return;
    }
    await this.store
      .remove(id)
      .catch((err: unknown) => this.deps.logger.warn({ event: 'upload_cleanup_failed', upload_id: id, err }, 'could not delete the bytes of an upload'));
  }

  /** The API error a response carries, when it is one. */
  errorOf(res: Response): ApiError | undefined {
    return this.errors.get(res);
  }

  /**
   * Turns a complete upload into a job: checks the image, enqueues it with the
   * upload's idempotency key, records the job id, deletes the bytes. Concurrent
   * calls for one upload share one run; a finished upload answers from its record.
   */
  finish(id: string): Promise<FinishedUpload> {
    let run = this.finishing.get(id);
    if (!run) {
      run = this.doFinish(id).finally(() => this.finishing.delete(id));
      this.finishing.set(id, run);
    }
    return run;
  }

  private async doFinish(id: string): Promise<FinishedUpload> {
    const { config, queue, metrics, logger } = this.deps;
    const done = await this.finished.get(id);
    if (done) return done;
    const upload = await this.store.getUpload(id).catch(() => {
      throw new Errors.UPLOAD_NOT_FOUND(JSON.stringify(id));
    });
    if (upload.size === undefined || upload.offset !== upload.size) {
      throw new Errors.INVALID_UPLOAD(`upload ${id} has ${upload.offset} of ${upload.size ?? '?'} bytes`);
    }
    let request;
    let image: Buffer;
    let contentType: string;
    try {
      request = jobRequestFromMetadata(upload.metadata, config.max_detections_limit);
      image = await readFile(join(this.dir, id));
      contentType = `image/${(await inspectImage(image, config.max_image_pixels)).format}`;
    } catch (err) {
      // Not an image (or metadata no longer valid): retrying cannot help, drop the bytes.
      await this.dropBytes(id);
      this.count('rejected');
      logger.info({ event: 'upload_rejected', upload_id: id, error: (err as Error).message }, `upload ${id} rejected`);
      if (err instanceof MetadataError) throw new Errors.INVALID_UPLOAD(err.message);
      throw err;
    }
    let job_id: string;
    let duplicate: boolean;
    try {
      ({ job_id, duplicate } = await queue.enqueue({
        line: request.line,
        priority: request.priority,
        image,
        contentType,
        options: request.options as Record<string, unknown>,
        idempotencyKey: idempotencyKeyFor(id),
      }));
    } catch (err) {
      this.count('failed');
      logger.warn({ event: 'upload_enqueue_failed', upload_id: id, err }, `upload ${id}: no job yet: ${(err as Error).message}`);
      throw err;
    }
    if (!duplicate) {
      metrics.jobs.inc({ state: 'enqueued' });
      this.deps.onJob?.(request.line, request.options.camera ?? DEFAULT_CAMERA);
    }
    logger.info(
      { event: 'job_enqueued', job_id, line: request.line, camera: request.options.camera ?? DEFAULT_CAMERA, duplicate, upload_id: id },
      'job enqueued',
    );
    const record: FinishedUpload = { upload_id: id, job_id, size: upload.size, metadata: upload.metadata ?? {}, finished_at: new Date().toISOString() };
    // Record first, delete second: a crash in between leaves a complete upload whose
    // next finish finds the same job through the idempotency key.
    await this.finished.put(record);
    await this.dropBytes(id);
    if (!duplicate) this.count('finished');
    return record;
  }

  /** GET /v1/uploads/:id: where an upload stands, as JSON. */
  async status(id: string): Promise<UploadStatus> {
    const done = UPLOAD_ID.test(id) ? await this.finished.get(id) : undefined;
    if (done) {
      return { upload_id: id, state: 'finished', offset: done.size, length: done.size, metadata: done.metadata, ...jobFields(done.job_id) };
    }
    let upload: Upload;
    try {
      if (!UPLOAD_ID.test(id)) throw new Error('not an upload id');
      upload = await this.store.getUpload(id);
    } catch {
      throw new Errors.UPLOAD_NOT_FOUND(JSON.stringify(id));
    }
    const expires = this.expiresAt(upload);
    if (expires !== undefined && expires < Date.now()) throw new Errors.UPLOAD_NOT_FOUND(`${JSON.stringify(id)} (expired)`);
    const complete = upload.size !== undefined && upload.offset === upload.size;
    return {
      upload_id: id,
      state: complete ? 'complete' : 'uploading',
      offset: upload.offset,
      length: upload.size ?? null,
      metadata: upload.metadata ?? {},
      ...(expires !== undefined ? { expires_at: new Date(expires).toISOString() } : {}),
    };
  }

  /** Deletes expired unfinished uploads and old finished records. */
  async cleanUp(): Promise<{ expired: number; records: number }> {
    if (!this.core && !existsSync(this.dir)) return { expired: 0, records: 0 };
    const expired = await this.tus.cleanUpExpiredUploads();
    const records = await this.finished.prune(this.deps.config.upload_expiry_ms);
    if (expired > 0) this.count('expired', expired);
    if (expired + records > 0) this.deps.logger.info({ event: 'uploads_cleaned', expired, records }, `removed ${expired} expired uploads`);
    return { expired, records };
  }

  /** Runs cleanUp periodically (a quarter of the expiry, between 1 s and 10 min). */
  start(): void {
    const every = Math.min(Math.max(Math.floor(this.deps.config.upload_expiry_ms / 4), 1000), 600_000);
    this.timer = setInterval(() => {
      this.cleanUp().catch((err: Error) => this.deps.logger.warn({ event: 'uploads_cleanup_failed', err }, `upload cleanup: ${err.message}`));
    }, every);
    this.timer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await Promise.allSettled([...this.finishing.values()]);
  }

  private count(outcome: UploadOutcome | undefined, n = 1): void {
    if (outcome) this.counter.inc({ outcome }, n);
  }

  private expiresAt(upload: Upload): number | undefined {
    const ms = this.store.getExpiration();
    return ms > 0 && upload.creation_date ? new Date(upload.creation_date).getTime() + ms : undefined;
  }

  /**
   * Requests about an upload that is already a job (the bytes are gone; tus would
   * say 404), and HEAD of a complete upload without a job yet: tus-js-client
   * resuming an upload whose offset equals its length reports success without
   * another PATCH, so the job is made here (or 503, and the client retries).
   */
  private async answerFinished(req: Request, id: string): Promise<Response | undefined> {
    if (!req.headers.get('tus-resumable') || !UPLOAD_ID.test(id)) return undefined;
    if (req.method !== 'HEAD' && req.method !== 'PATCH' && req.method !== 'DELETE') return undefined;
    const origin = req.headers.get('origin') ?? undefined;
    const base = originAllowed(this.corsOrigins, origin) ? { ...BASE_ANSWER_HEADERS, 'Access-Control-Allow-Origin': origin! } : BASE_ANSWER_HEADERS;
    let record = await this.finished.get(id);
    const invalid = record || req.method === 'HEAD' ? invalidTusHeaders(req.headers) : [];
    if (invalid.length > 0) return this.errorResponse(tusError(400, `Invalid ${invalid.join(' ')}`, 0), base);
    if (!record && req.method === 'HEAD') {
      const upload = await this.store.getUpload(id).catch(() => undefined);
      const expires = upload && this.expiresAt(upload);
      const complete = upload && upload.size !== undefined && upload.offset === upload.size;
      if (!complete || (expires !== undefined && expires < Date.now())) return undefined;
      try {
        record = await this.finish(id);
      } catch (err) {
        const api = toApiError(err);
        if (api.code === 'INTERNAL_ERROR') this.deps.logger.error({ event: 'upload_error', upload_id: id, err }, `finishing upload ${id} failed`);
        return this.errorResponse(api, base);
      }
    }
    if (!record) return undefined;
    const headers: Record<string, string> = { ...base, 'Cache-Control': 'no-store', ...jobHeaders(record.job_id) };
    switch (req.method) {
      case 'HEAD': {
        const metadata = stringifyMetadata(record.metadata);
        return new Response(null, {
          status: 200,
          headers: {
            ...headers,
            'Upload-Offset': String(record.size),
            'Upload-Length': String(record.size),
            ...(metadata ? { 'Upload-Metadata': metadata } : {}),
          },
        });
      }
      case 'PATCH': {
        // A retried last PATCH (its answer was lost): same answer, same job.
        const offset = req.headers.get('upload-offset');
        if (offset === String(record.size) && !(Number(req.headers.get('content-length') ?? 0) > 0)) {
          return new Response(null, { status: 204, headers: { ...headers, 'Upload-Offset': String(record.size) } });
        }
        return this.errorResponse(tusError(409, '', 0), headers);
      }
      default: // DELETE: forget the record; the job goes on.
        await this.finished.remove(id);
        return new Response(null, { status: 204, headers: base });
    }
  }

  /** tus's plain-text errors become `{error: {code, message}}`; its headers stay. */
  private async toJsonError(res: Response): Promise<Response> {
    if (res.status < 400 || this.errors.has(res)) return res;
    const text = await res.text();
    let api: ApiError;
    try {
      const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
      if (typeof parsed.error?.code !== 'string') throw new Error('not ours');
      api = { statusCode: res.status, code: parsed.error.code, message: String(parsed.error.message) };
    } catch {
      api = tusError(res.status, text, this.deps.config.upload_max_bytes);
    }
    return this.errorResponse(api, res.headers);
  }

  private errorResponse(api: ApiError, headers: HeadersInit = {}): Response {
    const all = new Headers(headers);
    for (const [name, value] of Object.entries(errorHeaders(api))) all.set(name, value);
    all.delete('content-length');
    const res = new Response(jsonError(api), { status: api.statusCode, headers: all });
    this.errors.set(res, api);
    return res;
  }
}

function jobFields(jobId: string) {
  return { job_id: jobId, job_location: `/v1/jobs/${jobId}` };
}

function jobHeaders(jobId: string): Record<string, string> {
  return { [JOB_ID_HEADER]: jobId, [JOB_LOCATION_HEADER]: `/v1/jobs/${jobId}` };
}

function errorHeaders(api: ApiError): Record<string, string> {
  return {
    'Content-Type': 'application/json; charset=utf-8',
    ...(carriesRetryAfter(api.statusCode, api.code) ? { 'Retry-After': '1' } : {}),
  };
}

function jsonError(api: ApiError): string {
  return JSON.stringify({ error: { code: api.code, message: api.message } });
}
