import { setMaxListeners } from 'node:events';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SightlineClient } from '../client/client.js';
import { SightlineError } from '../client/errors.js';
import { edgeResize, type EdgeResize } from '../client/edge-resize.js';
import type { StreamConnection } from '../client/stream.js';
import { PACKAGE_ROOT } from './config-args.js';

const HELP = `Usage: sightline simulate [options]

A camera simulator: N production lines (line-1 … line-N), each sending F frames
per second, open loop and evenly spaced (a slow server does not slow the cameras
down), sample images in rotation, through the client SDK. Prints a one-line
summary every second to stderr and a final report to stdout.

Options:
  --url URL                 the server [http://127.0.0.1:8080]
  --lines N                 production lines, one camera each [1]
  --fps F                   frames per second per line [5]
  --duration S              seconds of sending [10]
  --transport ws|http|jobs  ws: one /v1/stream connection per line; http: POST
                            /v1/detect; jobs: POST /v1/jobs, latency until the
                            result is available (polled) [ws]
  --images DIR              JPEG/PNG/WebP images to send in rotation [./samples,
                            else the package's samples]
  --model NAME[:VERSION]    model to ask for [the server's default]
  --api-key KEY             sent as Authorization: Bearer [env SIGHTLINE_API_KEY]
  --edge-resize N|WxH       scale the images down here to fit N×N (or W×H, the
                            model's input size), aspect ratio kept, and send the
                            original size with them: boxes come back in original
                            pixels (docs/sdk.md#edge-resize) [off]
  --drain S                 after the last frame, seconds to wait for answers;
                            frames still unanswered then count as errors [10]
  --json                    print the final report as JSON
  -h, --help                show this help

Every frame ends as exactly one of: result, error (by code, client-side codes
such as NOT_CONNECTED included) or drop (ws only: the server's backpressure), so
sent = results + errors + drops. Exit code 0 when the run happened (errors or
not), 2 on bad arguments.
`;

type Transport = 'ws' | 'http' | 'jobs';
const TRANSPORTS: Transport[] = ['ws', 'http', 'jobs'];
const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp']);

export interface SimulateOptions {
  url: string;
  lines: number;
  fps: number;
  durationS: number;
  transport: Transport;
  images: Buffer[];
  model?: string;
  apiKey?: string;
  drainS: number;
  /** Scale every image to fit this at the edge and send its original size (the SDK's edgeResize). */
  edgeResize?: EdgeResize;
  /** Where the live one-line summaries go (null: nowhere). */
  live: NodeJS.WritableStream | null;
}

interface LineCounts {
  sent: number;
  results: number;
  errors: number;
  drops: number;
}

export interface SimulateReport {
  transport: Transport;
  url: string;
  lines: number;
  fps_per_line: number;
  duration_s: number;
  /** From the first frame to the last answer (or the end of the drain). */
  elapsed_s: number;
  target_fps: number;
  totals: LineCounts & { in_flight: number };
  errors_by_code: Record<string, number>;
  verdicts: Record<string, number>;
  latency_ms: { p50: number | null; p90: number | null; p99: number | null; max: number | null; mean: number | null };
  /** Frames sent per second of the run (below target when the simulator fell behind), results per second until the last answer. */
  achieved_fps: { sent: number; results: number };
  per_line: Record<string, LineCounts>;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

const round = (v: number | null, digits = 1): number | null => (v === null ? null : Math.round(v * 10 ** digits) / 10 ** digits);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

class Stats {
  readonly perLine = new Map<string, LineCounts>();
  readonly errorsByCode: Record<string, number> = {};
  readonly verdicts: Record<string, number> = {};
  readonly latencies: number[] = [];
  window: number[] = [];
  inFlight = 0;

  constructor(lines: string[]) {
    for (const l of lines) this.perLine.set(l, { sent: 0, results: 0, errors: 0, drops: 0 });
  }

  get totals(): LineCounts {
    const t = { sent: 0, results: 0, errors: 0, drops: 0 };
    for (const c of this.perLine.values()) {
      t.sent += c.sent;
      t.results += c.results;
      t.errors += c.errors;
      t.drops += c.drops;
    }
    return t;
  }

  sent(line: string): void {
    this.perLine.get(line)!.sent++;
    this.inFlight++;
  }

  result(line: string, latencyMs: number, verdict: string): void {
    this.perLine.get(line)!.results++;
    this.inFlight--;
    this.latencies.push(latencyMs);
    this.window.push(latencyMs);
    this.verdicts[verdict] = (this.verdicts[verdict] ?? 0) + 1;
  }

  error(line: string, code: string): void {
    this.perLine.get(line)!.errors++;
    this.inFlight--;
    this.errorsByCode[code] = (this.errorsByCode[code] ?? 0) + 1;
  }

  drop(line: string): void {
    this.perLine.get(line)!.drops++;
    this.inFlight--;
  }
}

function codeOf(err: unknown): string {
  return err instanceof SightlineError ? err.code : 'CLIENT_ERROR';
}

/** Runs the simulation and returns its report. */
export async function simulate(options: SimulateOptions): Promise<SimulateReport> {
  const lines = Array.from({ length: options.lines }, (_, i) => `line-${i + 1}`);
  const stats = new Stats(lines);
  const client = new SightlineClient({ baseUrl: options.url, ...(options.apiKey ? { apiKey: options.apiKey } : {}) });
  const modelOption = options.model ? { model: options.model } : {};
  const drain = new AbortController();
  // Every request in flight listens on this one signal: hundreds at 100 fps, not a leak.
  setMaxListeners(0, drain.signal);
  const inFlight = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };

  // ws: one connection per line, as cameras have; frames are told apart by id.
  const connections = new Map<string, StreamConnection>();
  const frameLine = new Map<string, string>();
  if (options.transport === 'ws') {
    for (const line of lines) {
      const conn = client.stream({ line, clientKind: 'camera', reconnect: { initialDelayMs: 100, maxDelayMs: 2000 } });
      conn.on('result', (m, info) => {
        const l = frameLine.get(m.id);
        if (l === undefined) return;
        frameLine.delete(m.id);
        stats.result(l, info.latencyMs ?? 0, m.result.verdict);
      });
      conn.on('dropped', (m) => {
        const l = frameLine.get(m.id);
        if (l === undefined) return;
        frameLine.delete(m.id);
        stats.drop(l);
      });
      conn.on('error', (err) => {
        const l = err.frameId === null ? undefined : frameLine.get(err.frameId);
        if (l === undefined) return; // connection-level message errors are no frame's
        frameLine.delete(err.frameId!);
        stats.error(l, err.code);
      });
      connections.set(line, conn);
    }
    await Promise.all([...connections.values()].map((c) => c.ready(10_000).catch(() => undefined)));
  }

  // Scaled once per image, not per frame: a camera would scale each frame, but the simulator's
  // own CPU must not limit the frame rate it offers.
  const frames = await Promise.all(
    options.images.map(async (image) => {
      const edge = options.edgeResize === undefined ? undefined : await edgeResize(image, options.edgeResize);
      return {
        image: edge?.image ?? image,
        source: edge?.source ? { source_width: edge.source.width, source_height: edge.source.height } : {},
      };
    }),
  );

  const sendOne = (line: string, frame: (typeof frames)[number]): void => {
    stats.sent(line);
    const started = performance.now();
    const { image } = frame;
    const model = { ...modelOption, ...frame.source };
    if (options.transport === 'ws') {
      try {
        const id = connections.get(line)!.send(image, model);
        frameLine.set(id, line);
      } catch (err) {
        stats.error(line, codeOf(err));
      }
    } else if (options.transport === 'http') {
      track(
        client.detect(image, { line, ...model, signal: drain.signal, timeoutMs: 60_000 }).then(
          (r) => stats.result(line, performance.now() - started, r.verdict),
          (err: unknown) => stats.error(line, codeOf(err)),
        ),
      );
    } else {
      track(
        client
          .submitJob(image, { line, ...model, signal: drain.signal })
          .then(({ job_id }) => client.waitForJob(job_id, { timeoutMs: 3_600_000, pollIntervalMs: 20, maxPollIntervalMs: 250, signal: drain.signal }))
          .then(
            (r) => stats.result(line, performance.now() - started, r.verdict),
            (err: unknown) => stats.error(line, codeOf(err)),
          ),
      );
    }
  };

  const periodMs = 1000 / options.fps;
  const framesPerLine = Math.max(1, Math.round(options.durationS * options.fps));
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  let nextImage = 0;

  const ticker = setInterval(() => {
    const window = stats.window.sort((a, b) => a - b);
    stats.window = [];
    const t = stats.totals;
    const p = (q: number) => (window.length ? `${round(percentile(window, q))}` : '-');
    options.live?.write(
      `[${elapsed().toFixed(1).padStart(5)}s] ${options.transport} sent ${t.sent}  results ${t.results}  errors ${t.errors}  drops ${t.drops}  in flight ${stats.inFlight}  latency p50 ${p(50)} ms p99 ${p(99)} ms\n`,
    );
  }, 1000);

  // Open loop: every line sends frame k at t0 + offset + k·period, whatever the answers do.
  await Promise.all(
    lines.map(async (line, i) => {
      const offset = (i * periodMs) / lines.length;
      for (let k = 0; k < framesPerLine; k++) {
        const due = t0 + offset + k * periodMs;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        sendOne(line, frames[nextImage++ % frames.length]!);
      }
    }),
  );
  const sentUntil = elapsed();

  // Drain: answers still coming, up to --drain seconds; then whatever is left fails.
  const drainUntil = performance.now() + options.drainS * 1000;
  while (stats.inFlight > 0 && performance.now() < drainUntil) await sleep(20);
  const finishedAt = elapsed();
  drain.abort();
  await Promise.all(inFlight);
  await Promise.all([...connections.values()].map((c) => c.close()));
  // Refused or lost frames were counted; anything a closed connection left behind is here.
  for (const [, line] of frameLine) stats.error(line, 'NO_ANSWER');
  frameLine.clear();
  clearInterval(ticker);

  const sorted = [...stats.latencies].sort((a, b) => a - b);
  const totals = stats.totals;
  return {
    transport: options.transport,
    url: options.url,
    lines: options.lines,
    fps_per_line: options.fps,
    duration_s: options.durationS,
    elapsed_s: round(finishedAt, 3)!,
    target_fps: options.lines * options.fps,
    totals: { ...totals, in_flight: stats.inFlight },
    errors_by_code: stats.errorsByCode,
    verdicts: stats.verdicts,
    latency_ms: {
      p50: round(percentile(sorted, 50)),
      p90: round(percentile(sorted, 90)),
      p99: round(percentile(sorted, 99)),
      max: round(sorted.at(-1) ?? null),
      mean: round(sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : null),
    },
    achieved_fps: {
      sent: round(totals.sent / Math.max(options.durationS, sentUntil), 2)!,
      results: round(totals.results / Math.max(options.durationS, finishedAt), 2)!,
    },
    per_line: Object.fromEntries(stats.perLine),
  };
}

export function formatReport(r: SimulateReport): string {
  const errors =
    Object.entries(r.errors_by_code)
      .map(([code, n]) => `${code} ${n}`)
      .join(', ') || 'none';
  const l = r.latency_ms;
  return [
    `simulate ${r.transport} → ${r.url}: ${r.lines} line(s) × ${r.fps_per_line} fps for ${r.duration_s} s (target ${r.target_fps} fps)`,
    `sent ${r.totals.sent}  results ${r.totals.results}  errors ${r.totals.errors}  drops ${r.totals.drops}  (elapsed ${r.elapsed_s} s)`,
    `errors by code: ${errors}`,
    `verdicts: ${
      Object.entries(r.verdicts)
        .map(([v, n]) => `${v} ${n}`)
        .join(', ') || 'none'
    }`,
    `latency ms: p50 ${l.p50 ?? '-'}  p90 ${l.p90 ?? '-'}  p99 ${l.p99 ?? '-'}  max ${l.max ?? '-'}  mean ${l.mean ?? '-'}`,
    `achieved fps: sent ${r.achieved_fps.sent}  results ${r.achieved_fps.results}`,
  ].join('\n');
}

function loadImages(dir: string): Buffer[] {
  const files = readdirSync(dir)
    .filter((f) => IMAGE_EXTENSIONS.has(extname(f).toLowerCase()))
    .sort()
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).isFile());
  return files.map((f) => readFileSync(f));
}

/** ./samples where it exists (a checkout), else the samples that ship with the package. */
function defaultImagesDir(): string {
  const local = resolve('samples');
  return existsSync(local) ? local : join(PACKAGE_ROOT, 'samples');
}

export async function runSimulate(argv: string[]): Promise<number> {
  const fail = (message: string) => {
    process.stderr.write(`sightline simulate: ${message}\n\n${HELP}`);
    return 2;
  };
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        url: { type: 'string', default: 'http://127.0.0.1:8080' },
        lines: { type: 'string', default: '1' },
        fps: { type: 'string', default: '5' },
        duration: { type: 'string', default: '10' },
        transport: { type: 'string', default: 'ws' },
        images: { type: 'string' },
        model: { type: 'string' },
        'api-key': { type: 'string' },
        drain: { type: 'string', default: '10' },
        'edge-resize': { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    return fail((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const lines = Number(values.lines);
  const fps = Number(values.fps);
  const durationS = Number(values.duration);
  const drainS = Number(values.drain);
  if (!Number.isInteger(lines) || lines < 1 || lines > 10_000) return fail(`--lines must be an integer from 1 to 10000, not ${JSON.stringify(values.lines)}`);
  if (!(fps > 0 && fps <= 10_000)) return fail(`--fps must be a number above 0 (at most 10000), not ${JSON.stringify(values.fps)}`);
  if (!(durationS > 0)) return fail(`--duration must be a number of seconds above 0, not ${JSON.stringify(values.duration)}`);
  if (!(drainS >= 0)) return fail(`--drain must be a number of seconds, not ${JSON.stringify(values.drain)}`);
  if (!TRANSPORTS.includes(values.transport as Transport))
    return fail(`--transport must be one of ${TRANSPORTS.join(', ')}, not ${JSON.stringify(values.transport)}`);
  try {
    const url = new URL(values.url!);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    return fail(`--url must be an http(s) URL, not ${JSON.stringify(values.url)}`);
  }
  let edge: EdgeResize | undefined;
  if (values['edge-resize'] !== undefined) {
    const m = /^(\d{1,5})(?:x(\d{1,5}))?$/.exec(values['edge-resize']);
    const w = Number(m?.[1]);
    const h = Number(m?.[2] ?? m?.[1]);
    if (!m || !(w >= 1 && h >= 1)) return fail(`--edge-resize must be N or WxH (pixels), not ${JSON.stringify(values['edge-resize'])}`);
    edge = { width: w, height: h };
  }
  const imagesDir = values.images !== undefined ? resolve(values.images) : defaultImagesDir();
  let images: Buffer[];
  try {
    images = loadImages(imagesDir);
  } catch (err) {
    return fail(`--images ${imagesDir}: ${(err as Error).message}`);
  }
  if (images.length === 0) return fail(`--images ${imagesDir}: no .jpg, .jpeg, .png or .webp files`);
  process.stderr.write(`sightline simulate: ${images.length} images from ${imagesDir}\n`);

  const report = await simulate({
    url: values.url!,
    lines,
    fps,
    durationS,
    transport: values.transport as Transport,
    images,
    ...(values.model ? { model: values.model } : {}),
    ...((values['api-key'] ?? process.env.SIGHTLINE_API_KEY) ? { apiKey: values['api-key'] ?? process.env.SIGHTLINE_API_KEY } : {}),
    drainS,
    ...(edge ? { edgeResize: edge } : {}),
    live: process.stderr,
  });
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\n`);
  return 0;
}
