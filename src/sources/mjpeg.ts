import { PulledSource, type SourceContext } from './source.js';
import type { SourceSpec } from './spec.js';

const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');
/** Longest part header block accepted (a camera's part headers are a few dozen bytes). */
const MAX_HEADER_BYTES = 8192;

/** The boundary of a `multipart/x-mixed-replace; boundary=…` content type, without quotes or a leading `--` some cameras add. */
export function mjpegBoundary(contentType: string | null): string | undefined {
  if (!contentType || !/^multipart\/x-mixed-replace\b/i.test(contentType.trim())) return undefined;
  const m = /boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const boundary = (m?.[1] ?? m?.[2])?.replace(/^--/, '');
  return boundary || undefined;
}

/**
 * Splits a `multipart/x-mixed-replace` byte stream into its parts' bodies.
 * Written here because no package in the dependency tree parses it: busboy
 * (@fastify/busboy, used by @fastify/multipart) handles multipart/form-data, a
 * finite body whose parts need a Content-Disposition, not an endless camera
 * stream; and the MJPEG packages on npm are unmaintained. A part with
 * Content-Length is cut by it (cameras send it, and JPEG bytes may hold anything);
 * one without is cut at the next delimiter.
 */
export class MultipartSplitter {
  readonly #delimiter: Buffer;
  readonly #maxPart: number;
  #buffer = Buffer.alloc(0);
  /** Before a part's headers (looking for a delimiter) or inside its body. */
  #body: { length: number | undefined } | undefined;

  constructor(boundary: string, maxPartBytes: number) {
    this.#delimiter = Buffer.from(`--${boundary}`);
    this.#maxPart = maxPartBytes;
  }

  /** Feeds bytes; returns the part bodies they complete. Throws on a part over the limit or a malformed header. */
  push(chunk: Uint8Array): Buffer[] {
    this.#buffer = this.#buffer.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.#buffer, chunk]);
    const parts: Buffer[] = [];
    for (;;) {
      if (!this.#body) {
        const at = this.#buffer.indexOf(this.#delimiter);
        if (at < 0) {
          // Keep only what could be the start of a delimiter.
          this.#buffer = this.#buffer.subarray(Math.max(0, this.#buffer.length - this.#delimiter.length));
          return parts;
        }
        const headersEnd = this.#buffer.indexOf(HEADER_END, at + this.#delimiter.length);
        if (headersEnd < 0) {
          if (this.#buffer.length - at > MAX_HEADER_BYTES) throw new Error('a part header block is over 8 KiB');
          this.#buffer = this.#buffer.subarray(at);
          return parts;
        }
        const headers = this.#buffer.subarray(at + this.#delimiter.length, headersEnd).toString('latin1');
        const length = /(?:^|\r\n)content-length\s*:\s*(\d+)/i.exec(headers)?.[1];
        this.#body = { length: length === undefined ? undefined : Number(length) };
        if (this.#body.length !== undefined && this.#body.length > this.#maxPart)
          throw new Error(`a part of ${this.#body.length} bytes is over body_limit_bytes`);
        this.#buffer = this.#buffer.subarray(headersEnd + HEADER_END.length);
      }
      const { length } = this.#body;
      let end: number;
      if (length !== undefined) {
        if (this.#buffer.length < length) return parts;
        end = length;
      } else {
        const next = this.#buffer.indexOf(Buffer.concat([CRLF, this.#delimiter]));
        if (next < 0) {
          if (this.#buffer.length > this.#maxPart) throw new Error('a part without Content-Length is over body_limit_bytes');
          return parts;
        }
        end = next;
      }
      parts.push(Buffer.from(this.#buffer.subarray(0, end)));
      this.#buffer = this.#buffer.subarray(end);
      this.#body = undefined;
    }
  }
}

/**
 * MJPEG over HTTP: one long GET answered with `multipart/x-mixed-replace`, a JPEG
 * per part, at the camera's frame rate. Every part is a frame, newest wins
 * (offer()); `interval_ms`, when set, takes at most one frame per interval. A
 * stream that ends, stalls for source_timeout_ms or cannot be opened is a
 * failure: the source reconnects with backoff.
 */
export class MjpegSource extends PulledSource {
  #lastTaken = 0;

  constructor(spec: SourceSpec, ctx: SourceContext) {
    super(spec, ctx);
  }

  /** Time before reconnecting after a stream that ended cleanly (the loop's wait after step()). */
  protected get intervalMs(): number {
    return this.ctx.settings.backoffMs;
  }

  protected async step(signal: AbortSignal): Promise<void> {
    const { timeoutMs, maxBytes } = this.ctx.settings;
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    // One timer for both waits: the answer's head, then each next chunk of the stream.
    let timer = setTimeout(() => controller.abort(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    const stalled = () => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(new Error(`no data for ${timeoutMs} ms`)), timeoutMs);
    };
    const where = `GET ${this.spec.target}`;
    try {
      const response = await fetch(this.spec.target, { signal: controller.signal, headers: { accept: 'multipart/x-mixed-replace' } });
      if (!response.ok || !response.body) {
        await response.body?.cancel().catch(() => undefined);
        throw new Error(`${where}: HTTP ${response.status}`);
      }
      const boundary = mjpegBoundary(response.headers.get('content-type'));
      if (!boundary) {
        await response.body.cancel().catch(() => undefined);
        throw new Error(`${where}: not an MJPEG stream (content-type ${response.headers.get('content-type')})`);
      }
      const splitter = new MultipartSplitter(boundary, maxBytes);
      stalled();
      for await (const chunk of response.body) {
        stalled();
        for (const frame of splitter.push(chunk)) {
          // Connected and delivering: up (and the backoff starts from its base next time).
          this.markUp();
          const now = performance.now();
          if (this.spec.interval_ms > 0 && now - this.#lastTaken < this.spec.interval_ms) continue;
          this.#lastTaken = now;
          if (frame.length > 0) this.offer(frame);
        }
      }
      if (!signal.aborted) throw new Error(`${where}: the stream ended`);
    } catch (err) {
      if (signal.aborted) return;
      const reason = controller.signal.aborted ? controller.signal.reason : err;
      const message = reason instanceof Error ? (reason.cause instanceof Error ? reason.cause.message : reason.message) : String(reason);
      throw new Error(message.startsWith(where) ? message : `${where}: ${message}`);
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
  }
}
