/**
 * The load generator, run as a process of its own (`node --import tsx bench/load.ts
 * CONFIG.json`) so it never shares an event loop with the server or the harness.
 * It POSTs a rotating set of JPEGs raw to /v1/detect over keep-alive node:http
 * connections, closed-loop (N clients, each sends its next request when the
 * previous one is answered) or open-loop (a fixed arrival rate, whatever the server
 * does, with a cap on requests outstanding), and writes a LoadResult as JSON.
 */
import http from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { loadImages } from './images.js';
import { summarize, type Summary } from './stats.js';

export interface LoadConfig {
  host: string;
  port: number;
  path: string;
  imagesDir: string;
  mode: 'closed' | 'open';
  /** Closed loop: clients. */
  concurrency?: number;
  /** Open loop: requests per second. */
  rate?: number;
  warmupS: number;
  durationS: number;
  /** Open loop: most requests in flight; arrivals beyond it are counted as not sent. */
  maxOutstanding: number;
  /** After the window, how long requests still in flight may take before they are abandoned. */
  drainS: number;
  headers: Record<string, string>;
  resultPath: string;
}

export interface LoadResult {
  mode: 'closed' | 'open';
  concurrency?: number;
  rate?: number;
  windowS: number;
  /** The measured window and the end of the drain, epoch ms (performance.timeOrigin based). */
  windowStartMs: number;
  windowEndMs: number;
  finishedMs: number;
  /** Requests issued in the measured window (open loop: arrivals that were sent). */
  sent: number;
  /** Open loop: arrivals dropped because maxOutstanding requests were in flight. */
  notSent: number;
  /** Answered requests counted (closed: completed in the window; open: sent in the window). */
  answered: number;
  /** Still unanswered when the drain time ran out (aborted). */
  abandoned: number;
  byStatus: Record<string, number>;
  byCode: Record<string, number>;
  /** Connection errors, timeouts, unparsable bodies. */
  transportErrors: Record<string, number>;
  /** 200 responses per second of window. */
  okPerSec: number;
  latencyOkMs: Summary;
  latencyAllMs: Summary;
  /** Latency of shed responses (503/504). */
  latencyShedMs: Summary;
  /** Server-reported timings_ms of 200 responses, by key. */
  serverTimingsMs: Record<string, Summary>;
  /** Client latency minus timings_ms.infer, per 200 response. */
  overheadMs: Summary;
  /** Client latency minus timings_ms.infer and timings_ms.decode. */
  overheadExclDecodeMs: Summary;
  /** Client latency minus timings_ms.total (HTTP, routing, body reading, JSON). */
  httpOverheadMs: Summary;
  /** Per-200 client latencies (ms, 0.01 resolution) in completion order. */
  latenciesOkMs: number[];
  maxInFlight: number;
  generatorCpuPct: number;
  generatorLoopDelayP99Ms: number;
  /** Open loop: how late the generator sent arrivals, ms. */
  sendLagMs?: Summary;
}

interface Outcome {
  scheduled: number;
  done: number;
  status: number;
  code?: string;
  timings?: Record<string, number>;
  error?: string;
}

function post(
  agent: http.Agent,
  c: LoadConfig,
  body: Buffer,
  callback: (status: number, text: string | undefined, error?: string) => void,
): http.ClientRequest {
  // A socket error after the response ended must not count the request twice.
  let settled = false;
  const onDone = (status: number, text: string | undefined, error?: string) => {
    if (settled) return;
    settled = true;
    callback(status, text, error);
  };
  const req = http.request(
    {
      agent,
      host: c.host,
      port: c.port,
      path: c.path,
      method: 'POST',
      headers: { 'content-type': 'image/jpeg', 'content-length': body.length, ...c.headers },
    },
    (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => onDone(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')));
      res.on('error', (err) => onDone(0, undefined, err.message));
    },
  );
  req.on('error', (err: NodeJS.ErrnoException) => onDone(0, undefined, err.code ?? err.message));
  req.end(body);
  return req;
}

function outcomeOf(scheduled: number, status: number, text: string | undefined, error?: string): Outcome {
  const o: Outcome = { scheduled, done: performance.now(), status };
  if (error !== undefined) {
    o.error = error;
    return o;
  }
  try {
    const body = JSON.parse(text ?? '') as { timings_ms?: Record<string, number>; error?: { code?: string } };
    if (status === 200) o.timings = body.timings_ms ?? {};
    else o.code = body.error?.code ?? `HTTP_${status}`;
  } catch {
    if (status === 200) o.error = 'unparsable_body';
    else o.code = `HTTP_${status}`;
  }
  return o;
}

async function closedLoop(c: LoadConfig, jpegs: Buffer[], agent: http.Agent, win: { start: number; end: number }) {
  const outcomes: Outcome[] = [];
  let next = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const stopAt = win.end;
  const client = async () => {
    while (performance.now() < stopAt) {
      const body = jpegs[next++ % jpegs.length]!;
      const start = performance.now();
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const outcome = await new Promise<Outcome>((resolve) => {
        const req = post(agent, c, body, (status, text, error) => resolve(outcomeOf(start, status, text, error)));
        req.setTimeout(c.drainS * 1000 + c.durationS * 1000, () => req.destroy(new Error('timeout')));
      });
      inFlight--;
      if (outcome.done >= win.start && outcome.done <= win.end) outcomes.push(outcome);
      if (outcome.error && outcome.error !== 'unparsable_body') await new Promise((r) => setTimeout(r, 10));
    }
  };
  await Promise.all(Array.from({ length: c.concurrency ?? 1 }, client));
  return { outcomes, maxInFlight, notSent: 0, abandoned: 0, sendLag: [] as number[] };
}

async function openLoop(c: LoadConfig, jpegs: Buffer[], agent: http.Agent, win: { start: number; end: number }) {
  const rate = c.rate ?? 1;
  const interval = 1000 / rate;
  const outcomes: Outcome[] = [];
  const inFlight = new Set<http.ClientRequest>();
  const sendLag: number[] = [];
  let maxInFlight = 0;
  let notSent = 0;
  let sent = 0;
  let next = 0;
  let counting = true;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      // Send every arrival that is due, each stamped with its scheduled time.
      for (;;) {
        const scheduled = win.start + sent * interval + notSent * interval;
        if (scheduled > now || scheduled >= win.end) break;
        if (inFlight.size >= c.maxOutstanding) {
          notSent++;
          continue;
        }
        sent++;
        sendLag.push(now - scheduled);
        const body = jpegs[next++ % jpegs.length]!;
        const req = post(agent, c, body, (status, text, error) => {
          if (!counting) return; // aborted after the drain: counted as abandoned
          inFlight.delete(req);
          outcomes.push(outcomeOf(scheduled, status, text, error));
        });
        inFlight.add(req);
        maxInFlight = Math.max(maxInFlight, inFlight.size);
      }
      if (now >= win.end) resolve();
      else setTimeout(tick, Math.min(5, Math.max(1, interval / 2)));
    };
    const wait = win.start - performance.now();
    setTimeout(tick, Math.max(0, wait));
  });
  // Drain: wait for answers to what was sent, up to drainS, then abort the rest.
  const drainEnd = performance.now() + c.drainS * 1000;
  while (inFlight.size > 0 && performance.now() < drainEnd) await new Promise((r) => setTimeout(r, 50));
  const abandoned = inFlight.size;
  counting = false;
  for (const req of inFlight) req.destroy(new Error('abandoned'));
  return { outcomes, maxInFlight, notSent, abandoned, sendLag };
}

function count(map: Record<string, number>, key: string): void {
  map[key] = (map[key] ?? 0) + 1;
}

export async function runLoad(c: LoadConfig): Promise<LoadResult> {
  const jpegs = await loadImages(c.imagesDir);
  const open = c.mode === 'open';
  const agent = new http.Agent({
    keepAlive: true,
    maxSockets: open ? c.maxOutstanding : (c.concurrency ?? 1),
    maxFreeSockets: open ? c.maxOutstanding : (c.concurrency ?? 1),
  });
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  // Closed loop warms up inside the run; open loop starts on a warm server (the harness ran closed loops first).
  const start = performance.now() + (open ? 100 : c.warmupS * 1000);
  const win = { start, end: start + c.durationS * 1000 };
  let cpu0 = process.cpuUsage();
  const warmupTimer = setTimeout(
    () => {
      cpu0 = process.cpuUsage();
      loopDelay.enable();
    },
    Math.max(0, start - performance.now()),
  );
  const run = open ? await openLoop(c, jpegs, agent, win) : await closedLoop(c, jpegs, agent, win);
  clearTimeout(warmupTimer);
  loopDelay.disable();
  const cpu = process.cpuUsage(cpu0);
  agent.destroy();

  const byStatus: Record<string, number> = {};
  const byCode: Record<string, number> = {};
  const transportErrors: Record<string, number> = {};
  const okLatency: number[] = [];
  const allLatency: number[] = [];
  const shedLatency: number[] = [];
  const overhead: number[] = [];
  const httpOverhead: number[] = [];
  const overheadExclDecode: number[] = [];
  const timings: Record<string, number[]> = {};
  for (const o of run.outcomes) {
    const latency = o.done - o.scheduled;
    if (o.error) {
      count(transportErrors, o.error);
      continue;
    }
    count(byStatus, String(o.status));
    allLatency.push(latency);
    if (o.status === 200 && o.timings) {
      okLatency.push(latency);
      for (const [key, value] of Object.entries(o.timings)) (timings[key] ??= []).push(value);
      if (typeof o.timings.infer === 'number') overhead.push(latency - o.timings.infer);
      if (typeof o.timings.infer === 'number' && typeof o.timings.decode === 'number') {
        overheadExclDecode.push(latency - o.timings.infer - o.timings.decode);
      }
      if (typeof o.timings.total === 'number') httpOverhead.push(latency - o.timings.total);
    } else if (o.code) {
      count(byCode, o.code);
      if (o.status === 503 || o.status === 504) shedLatency.push(latency);
    }
  }
  const windowS = c.durationS;
  const result: LoadResult = {
    mode: c.mode,
    ...(open ? { rate: c.rate } : { concurrency: c.concurrency }),
    windowS,
    windowStartMs: performance.timeOrigin + win.start,
    windowEndMs: performance.timeOrigin + win.end,
    finishedMs: performance.timeOrigin + performance.now(),
    sent: open ? run.outcomes.length + run.abandoned : run.outcomes.length,
    notSent: run.notSent,
    answered: run.outcomes.length - Object.values(transportErrors).reduce((a, b) => a + b, 0),
    abandoned: run.abandoned,
    byStatus,
    byCode,
    transportErrors,
    okPerSec: okLatency.length / windowS,
    latencyOkMs: summarize(okLatency),
    latencyAllMs: summarize(allLatency),
    latencyShedMs: summarize(shedLatency),
    serverTimingsMs: Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, summarize(v)])),
    overheadMs: summarize(overhead),
    overheadExclDecodeMs: summarize(overheadExclDecode),
    httpOverheadMs: summarize(httpOverhead),
    latenciesOkMs: okLatency.map((v) => Math.round(v * 100) / 100),
    maxInFlight: run.maxInFlight,
    generatorCpuPct: ((cpu.user + cpu.system) / 1000 / (windowS * 1000)) * 100,
    generatorLoopDelayP99Ms: loopDelay.percentile(99) / 1e6,
    ...(open ? { sendLagMs: summarize(run.sendLag) } : {}),
  };
  return result;
}

async function main(): Promise<void> {
  const configPath = process.argv[2];
  if (!configPath) throw new Error('usage: load.ts CONFIG.json');
  const config = JSON.parse(await readFile(configPath, 'utf8')) as LoadConfig;
  const result = await runLoad(config);
  await writeFile(config.resultPath, JSON.stringify(result));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    () => process.exit(0),
    (err: Error) => {
      process.stderr.write(`load generator: ${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  );
}
