import { spawn, type ChildProcess } from 'node:child_process';
import { PulledSource, type SourceContext } from './source.js';
import type { SourceSpec } from './spec.js';

const SOI = Buffer.from([0xff, 0xd8]);
const EOI = Buffer.from([0xff, 0xd9]);
/** Last bytes of ffmpeg's stderr kept: the reason a stream failed is at its end. */
const STDERR_KEEP = 2048;
/** Extra time for the first frame of each ffmpeg (connect, probe, a key frame). */
const FIRST_FRAME_GRACE_MS = 10_000;

/**
 * Splits ffmpeg's `image2pipe` MJPEG output into JPEGs. ffmpeg's own MJPEG
 * encoder writes baseline JPEGs without thumbnails, and inside entropy-coded
 * data every 0xFF is stuffed (FF 00), so the first FF D9 after an FF D8 ends a frame.
 */
export class JpegSplitter {
  readonly #maxBytes: number;
  #buffer: Buffer = Buffer.alloc(0);

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  push(chunk: Buffer): Buffer[] {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const frames: Buffer[] = [];
    for (;;) {
      const start = this.#buffer.indexOf(SOI);
      if (start < 0) {
        this.#buffer = this.#buffer.subarray(Math.max(0, this.#buffer.length - 1));
        return frames;
      }
      const end = this.#buffer.indexOf(EOI, start + SOI.length);
      if (end < 0) {
        if (this.#buffer.length - start > this.#maxBytes) throw new Error('a frame is over body_limit_bytes');
        this.#buffer = this.#buffer.subarray(start);
        return frames;
      }
      frames.push(Buffer.from(this.#buffer.subarray(start, end + EOI.length)));
      this.#buffer = this.#buffer.subarray(end + EOI.length);
    }
  }
}

/** ffmpeg's arguments for one source: decode `target`, emit JPEGs at `fps` on stdout. */
export function ffmpegArgs(target: string, fps: number): string[] {
  const isFile = !/^[a-z][a-z0-9+.-]*:\/\//i.test(target);
  return [
    '-hide_banner',
    '-loglevel',
    'error',
    '-nostdin',
    // RTSP over TCP: UDP loses packets (grey, smeared frames) on busy factory networks.
    ...(/^rtsps?:/i.test(target) ? ['-rtsp_transport', 'tcp'] : []),
    // A file is played at its own speed, as a camera would deliver it, not decoded as fast as possible.
    // A live stream is probed for 1 s instead of ffmpeg's 5 s, and not buffered: the first frame comes sooner.
    ...(isFile ? ['-re'] : ['-fflags', 'nobuffer', '-analyzeduration', '1000000']),
    '-i',
    target,
    '-an',
    '-vf',
    `fps=${fps}`,
    '-f',
    'image2pipe',
    '-c:v',
    'mjpeg',
    '-q:v',
    '4',
    'pipe:1',
  ];
}

/**
 * RTSP, HTTP video or a video file, decoded by an `ffmpeg` child process per
 * source that writes JPEG frames at the source's rate (1000 / interval_ms fps)
 * to its stdout. ffmpeg rather than a JavaScript decoder: it speaks every camera
 * protocol and codec (H.264, H.265, RTSP quirks) and runs on its own cores.
 * Frames are offered newest-wins; ffmpeg exiting (a stream that dropped, a file
 * that ended) or no frame for source_timeout_ms (plus two frame periods) is a
 * failure, and the source starts a new ffmpeg after its backoff.
 */
export class FfmpegSource extends PulledSource {
  readonly #binary: string;

  constructor(spec: SourceSpec, ctx: SourceContext, binary: string) {
    super(spec, ctx);
    this.#binary = binary;
  }

  /** Frame period; also the time before a new ffmpeg after one that ended cleanly. */
  protected get intervalMs(): number {
    return this.spec.interval_ms || this.ctx.settings.snapshotIntervalMs;
  }

  protected step(signal: AbortSignal): Promise<void> {
    const { timeoutMs, maxBytes } = this.ctx.settings;
    const fps = Math.round((1000 / this.intervalMs) * 1000) / 1000;
    const stallMs = timeoutMs + 2 * this.intervalMs;
    return new Promise<void>((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = spawn(this.#binary, ffmpegArgs(this.spec.target, fps), { stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (err) {
        return reject(err);
      }
      const splitter = new JpegSplitter(maxBytes);
      let stderr = '';
      let failure: string | undefined;
      let timer: NodeJS.Timeout | undefined;
      const stop = (why?: string) => {
        failure ??= why;
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          // ffmpeg stuck on a dead socket may ignore SIGTERM.
          setTimeout(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'), 2000).unref();
        }
      };
      const stalled = (ms = stallMs) => {
        clearTimeout(timer);
        timer = setTimeout(() => stop(`no frame for ${ms} ms`), ms);
      };
      const onAbort = () => stop();
      signal.addEventListener('abort', onAbort, { once: true });
      // The first frame may take seconds more: ffmpeg connects, probes the stream, waits for a key frame.
      stalled(stallMs + FIRST_FRAME_GRACE_MS);
      child.stdout?.on('data', (chunk: Buffer) => {
        let frames: Buffer[];
        try {
          frames = splitter.push(chunk);
        } catch (err) {
          return stop((err as Error).message);
        }
        for (const frame of frames) {
          stalled(stallMs);
          // Decoding and delivering: up (and the backoff starts from its base next time).
          this.markUp();
          this.offer(frame);
        }
      });
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr = (stderr + chunk.toString()).slice(-STDERR_KEEP);
      });
      let settled = false;
      const settle = () => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        return true;
      };
      child.on('error', (err) => {
        // Not started (no binary, not executable): no 'close' may follow.
        if (child.pid === undefined && settle()) reject(new Error(`cannot run ${this.#binary}: ${err.message} (source_ffmpeg_path)`));
        else stop(err.message);
      });
      child.on('close', (code, sig) => {
        if (!settle()) return;
        if (signal.aborted) return resolve();
        const lastLine = stderr.trim().split('\n').at(-1);
        reject(
          new Error(
            `ffmpeg ${this.spec.target}: ${failure ?? (code === 0 ? 'the stream ended' : `exited with ${code ?? sig}`)}${lastLine ? `: ${lastLine}` : ''}`,
          ),
        );
      });
    });
  }
}
