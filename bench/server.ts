/**
 * The server under test as a child process (`node dist/cli/main.js serve`), with
 * what the harness watches from outside: RSS and CPU from /proc every 250 ms, and a
 * /livez probe whose latency shows event-loop stalls as a client sees them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { epochMs, sleep, summarize, type Summary } from './stats.js';

export { epochMs };

const CLOCK_TICKS = 100; // USER_HZ on Linux

export interface ServerOptions {
  projectRoot: string;
  repoDir: string;
  /** Extra `serve` arguments passed through (e.g. --max-queue=64). */
  extraArgs: string[];
  logPath: string;
  readyTimeoutS: number;
  /** The child's environment; the harness's own when left out. */
  env?: NodeJS.ProcessEnv;
}

export interface ProcSample {
  /** epochMs() */
  t: number;
  rssKiB: number;
  /** utime + stime, seconds. */
  cpuS: number;
}

export interface WindowStats {
  rssStartMiB: number;
  rssPeakMiB: number;
  rssEndMiB: number;
  /** Server CPU over the window, % of one core. */
  cpuPct: number;
  livezMs: Summary;
  livezFailures: number;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function readProc(pid: number): { rssKiB: number; cpuS: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+)\s+kB/.exec(status);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name "(…)": state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpuS = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
    return { rssKiB: rss ? Number(rss[1]) : 0, cpuS };
  } catch {
    return undefined;
  }
}

export class ServerProcess {
  readonly samples: ProcSample[] = [];
  readonly livez: { t: number; ms: number; ok: boolean }[] = [];
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  private sampler: NodeJS.Timeout | undefined;
  private prober: NodeJS.Timeout | undefined;
  private probing = false;

  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
    readonly args: string[],
    readonly logPath: string,
  ) {
    child.on('exit', (code, signal) => {
      this.exitCode = code;
      this.exitSignal = signal;
    });
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.exitCode === null && this.exitSignal === null;
  }

  static async start(o: ServerOptions): Promise<ServerProcess> {
    const port = await freePort();
    const args = [
      join(o.projectRoot, 'dist/cli/main.js'),
      'serve',
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--models-dir',
      o.repoDir,
      '--log-level',
      'warn',
      // Benchmarks measure the model: the per-client rate limit would cap them first (extraArgs may override).
      '--rate-limit-per-second',
      '0',
      ...o.extraArgs,
    ];
    const log = openSync(o.logPath, 'a');
    const child = spawn(process.execPath, args, { cwd: o.projectRoot, stdio: ['ignore', log, log], env: o.env ?? process.env });
    closeSync(log);
    const server = new ServerProcess(child, port, ['dist/cli/main.js', ...args.slice(1)], o.logPath);
    try {
      await server.waitReady(o.readyTimeoutS);
    } catch (err) {
      await server.stop();
      throw err;
    }
    server.startWatching();
    return server;
  }

  private async waitReady(timeoutS: number): Promise<void> {
    const deadline = performance.now() + timeoutS * 1000;
    while (performance.now() < deadline) {
      if (!this.alive) throw new Error(`server exited (code ${this.exitCode}, signal ${this.exitSignal}) before ready:\n${this.logTail()}`);
      try {
        const res = await fetch(`${this.baseUrl}/readyz`, { signal: AbortSignal.timeout(2000) });
        await res.arrayBuffer();
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(200);
    }
    throw new Error(`server not ready after ${timeoutS} s:\n${this.logTail()}`);
  }

  private startWatching(): void {
    const sample = () => {
      const s = readProc(this.pid);
      if (s) this.samples.push({ t: epochMs(), ...s });
    };
    sample();
    this.sampler = setInterval(sample, 250);
    this.prober = setInterval(() => void this.probe(), 200);
  }

  /** One /livez probe at a time: a stalled server shows as one long probe, not a pile-up. */
  private async probe(): Promise<void> {
    if (this.probing || !this.alive) return;
    this.probing = true;
    const t = epochMs();
    try {
      const res = await fetch(`${this.baseUrl}/livez`, { signal: AbortSignal.timeout(10_000) });
      await res.arrayBuffer();
      this.livez.push({ t, ms: epochMs() - t, ok: res.status === 200 });
    } catch {
      this.livez.push({ t, ms: epochMs() - t, ok: false });
    } finally {
      this.probing = false;
    }
  }

  /** RSS, CPU and /livez figures between two epochMs() instants. */
  window(t0: number, t1: number): WindowStats {
    const inside = this.samples.filter((s) => s.t >= t0 && s.t <= t1);
    const first = inside[0];
    const last = inside.at(-1);
    const mib = (kib: number | undefined) => (kib === undefined ? Number.NaN : kib / 1024);
    const probes = this.livez.filter((p) => p.t >= t0 && p.t <= t1);
    const cpuPct = first && last && last.t > first.t ? ((last.cpuS - first.cpuS) / ((last.t - first.t) / 1000)) * 100 : Number.NaN;
    return {
      rssStartMiB: mib(first?.rssKiB),
      rssPeakMiB: mib(inside.length ? Math.max(...inside.map((s) => s.rssKiB)) : undefined),
      rssEndMiB: mib(last?.rssKiB),
      cpuPct,
      livezMs: summarize(probes.filter((p) => p.ok).map((p) => p.ms)),
      livezFailures: probes.filter((p) => !p.ok).length,
    };
  }

  async get(path: string): Promise<{ status: number; text: string }> {
    const res = await fetch(`${this.baseUrl}${path}`, { signal: AbortSignal.timeout(10_000) });
    return { status: res.status, text: await res.text() };
  }

  logTail(lines = 30): string {
    try {
      return readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** SIGTERM, then SIGKILL after `graceS`. */
  async stop(graceS = 15): Promise<void> {
    clearInterval(this.sampler);
    clearInterval(this.prober);
    if (!this.alive) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceS * 1000);
    await exited;
    clearTimeout(timer);
  }

  /** Synchronous last resort for process exit handlers. */
  killNow(): void {
    if (this.alive) this.child.kill('SIGKILL');
  }
}

/** Size of the server log so far: mark a phase's start for logEvents(). */
export function logSize(logPath: string): number {
  try {
    return statSync(logPath).size;
  } catch {
    return 0;
  }
}

/** Counts the server's log lines written since byte `from`, by `event` (and error code). */
export function logEvents(logPath: string, from = 0): Record<string, number> {
  const counts: Record<string, number> = {};
  let text = '';
  try {
    text = readFileSync(logPath).subarray(from).toString('utf8');
  } catch {
    return counts;
  }
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let key = 'non-JSON line';
    try {
      const entry = JSON.parse(line) as { event?: string; level?: number | string; error_code?: string };
      key = `${entry.event ?? '(no event)'}${entry.error_code ? ` ${entry.error_code}` : ''}`;
    } catch {
      // keep non-JSON
    }
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}
