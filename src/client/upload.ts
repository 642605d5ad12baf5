import { createReadStream, ReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Readable } from 'node:stream';
import * as tus from 'tus-js-client';
import { SightlineError } from './errors.js';
import type { InferenceOptions } from './types.js';
import { INFERENCE_OPTION_KEYS } from '../protocol/options.js';

/** What `upload()` takes: bytes, a file path, or a readable stream. */
export type UploadInput = Uint8Array | string | Readable;

export interface UploadOptions extends InferenceOptions {
  /** File name kept with the upload (`filename` metadata). Default: the path's base name. */
  filename?: string;
  /** Media type (`filetype` metadata), e.g. `image/jpeg`. Default: sniffed from bytes. */
  filetype?: string;
  /** Called as bytes go out: bytes sent so far, total (null when a stream's size is unknown). */
  onProgress?: (sent: number, total: number | null) => void;
  /**
   * Called once the server has created the upload, with its URL. Keep it (on disk, in
   * a database) and pass it back as `uploadUrl` to resume after a crash or a cut.
   */
  onUploadUrl?: (url: string) => void;
  /**
   * Resume this earlier upload instead of creating a new one: the client asks the
   * server how far it got (HEAD) and sends only the rest. The input must be the same.
   */
  uploadUrl?: string;
  /** Bytes per PATCH request. Default: one request for bytes and files, 5 MiB for streams. */
  chunkSize?: number;
  /** A stream's size in bytes; when unknown the upload length is deferred until the end. */
  size?: number;
  /** Waits between retries of a failed request (tus-js-client's `retryDelays`). Default [0, 1000, 3000, 5000]. */
  retryDelays?: number[];
  /** Aborts the upload (it stays on the server, resumable, until `upload_expiry_ms`). */
  signal?: AbortSignal;
}

export interface UploadResult {
  /** The upload's URL; usable as `uploadUrl` while it exists on the server. */
  upload_url: string;
  /** The job the finished upload became (poll it with `getJob`/`waitForJob`). */
  job_id: string;
}

const STREAM_CHUNK = 5 * 1024 * 1024;
export const JOB_ID_HEADER = 'sightline-job-id';

/** Media type from the first bytes (JPEG, PNG, WebP), else undefined. */
export function sniffImageType(bytes: Uint8Array): string | undefined {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'image/jpeg';
  if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return 'image/png';
  if (bytes.length >= 12 && Buffer.from(bytes.subarray(0, 4)).toString('latin1') === 'RIFF' && Buffer.from(bytes.subarray(8, 12)).toString('latin1') === 'WEBP')
    return 'image/webp';
  return undefined;
}

/** The tus `Upload-Metadata` of an upload: every inference option as a string. */
export function uploadMetadata(options: UploadOptions): Record<string, string> {
  const metadata: Record<string, string> = {};
  const keys = [...INFERENCE_OPTION_KEYS, 'filename', 'filetype'] as const;
  for (const key of keys) {
    const value = options[key];
    if (value !== undefined && value !== null) metadata[key] = String(value);
  }
  return metadata;
}

function errorFromTus(err: Error): SightlineError {
  const detailed = err as Partial<tus.DetailedError>;
  const res = detailed.originalResponse ?? null;
  if (res) {
    const status = res.getStatus();
    const body = res.getBody();
    let code = 'UPLOAD_FAILED';
    let message = body || err.message;
    try {
      const parsed = JSON.parse(body) as { error?: { code?: string; message?: string } };
      if (parsed.error?.code) code = parsed.error.code;
      if (parsed.error?.message) message = parsed.error.message;
    } catch {
      // @tus/server answers some errors in plain text
    }
    const retryAfter = res.getHeader('retry-after');
    return new SightlineError({
      code,
      message: `upload failed: ${message}`,
      status,
      retryAfterMs: retryAfter && /^\d+$/.test(retryAfter) ? Number(retryAfter) * 1000 : null,
      requestId: res.getHeader('x-request-id') ?? null,
      cause: err,
    });
  }
  return new SightlineError({ code: 'UPLOAD_FAILED', message: `upload failed: ${err.message}`, cause: err });
}

/**
 * A tus 1.0 resumable upload to `endpoint` (`<baseUrl>/v1/uploads`). The server turns the
 * finished upload into a job and names it in the final answer's `Sightline-Job-Id`.
 */
export async function tusUpload(
  endpoint: string,
  headers: Record<string, string>,
  input: UploadInput,
  options: UploadOptions,
  fetchImpl: typeof fetch,
): Promise<UploadResult> {
  let file: Buffer | ReadStream | Readable;
  let filename = options.filename;
  let filetype = options.filetype;
  let size: number | undefined;
  let chunkSize = options.chunkSize;
  if (typeof input === 'string') {
    filename ??= basename(input);
    if (filetype === undefined) {
      const handle = await open(input, 'r').catch((err: Error) => {
        throw new SightlineError({ code: 'UPLOAD_FAILED', message: `cannot read ${input}: ${err.message}`, cause: err });
      });
      try {
        const head = Buffer.alloc(16);
        const { bytesRead } = await handle.read(head, 0, 16, 0);
        filetype = sniffImageType(head.subarray(0, bytesRead));
      } finally {
        await handle.close();
      }
    }
    file = createReadStream(input);
  } else if (input instanceof Uint8Array) {
    file = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    filetype ??= sniffImageType(input);
    size = input.byteLength;
  } else {
    file = input;
    chunkSize ??= STREAM_CHUNK;
    size = options.size;
  }
  if (options.signal?.aborted) throw new SightlineError({ code: 'ABORTED', message: 'the upload was aborted', cause: options.signal.reason });
  const metadata = uploadMetadata({ ...options, filename, filetype });

  return new Promise<UploadResult>((resolve, reject) => {
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      options.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const upload = new tus.Upload(file as Buffer, {
      endpoint,
      ...(options.uploadUrl ? { uploadUrl: options.uploadUrl } : {}),
      metadata,
      headers,
      ...(chunkSize !== undefined ? { chunkSize } : {}),
      ...(size !== undefined && !(file instanceof ReadStream) && !Buffer.isBuffer(file) ? { uploadSize: size } : {}),
      ...(size === undefined && !(file instanceof ReadStream) && !Buffer.isBuffer(file) ? { uploadLengthDeferred: true } : {}),
      ...(options.retryDelays ? { retryDelays: options.retryDelays } : {}),
      storeFingerprintForResuming: false,
      removeFingerprintOnSuccess: false,
      onUploadUrlAvailable: () => {
        if (upload.url) options.onUploadUrl?.(upload.url);
      },
      onProgress: (sent, total) => options.onProgress?.(sent, total ?? size ?? null),
      onError: (err) => finish(() => reject(errorFromTus(err))),
      onSuccess: ({ lastResponse }) => {
        const url = upload.url;
        if (!url) return finish(() => reject(new SightlineError({ code: 'UPLOAD_FAILED', message: 'the upload finished without a URL' })));
        const jobId = lastResponse.getHeader(JOB_ID_HEADER);
        if (jobId) return finish(() => resolve({ upload_url: url, job_id: jobId }));
        // Resuming an upload that was already complete ends with a HEAD: ask again for the job.
        void fetchImpl(url, { method: 'HEAD', headers: { ...headers, 'tus-resumable': '1.0.0' } }).then(
          (res) => {
            const id = res.headers.get(JOB_ID_HEADER);
            finish(() =>
              id
                ? resolve({ upload_url: url, job_id: id })
                : reject(
                    new SightlineError({
                      code: 'UPLOAD_FAILED',
                      message: `the upload finished but the server named no job (no ${JOB_ID_HEADER} header)`,
                      status: res.status,
                    }),
                  ),
            );
          },
          (err: Error) => finish(() => reject(new SightlineError({ code: 'NETWORK_ERROR', message: err.message, cause: err }))),
        );
      },
    });
    const onAbort = () => {
      void upload.abort(false).catch(() => {});
      finish(() => reject(new SightlineError({ code: 'ABORTED', message: 'the upload was aborted', cause: options.signal?.reason })));
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    upload.start();
  });
}
