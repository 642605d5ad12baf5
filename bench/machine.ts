/**
 * Watches the whole machine while the benchmark runs: every figure here is a rate on
 * shared cores, so CPU that other processes take (a test suite, a build) must show in
 * the report. Samples /proc/stat (all CPU time) against the CPU of the harness, the
 * server and the generator every 250 ms; what is left is "foreign" CPU.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { epochMs, sleep } from './stats.js';

const CLOCK_TICKS = 100; // USER_HZ on Linux

interface Sample {
  t: number;
  /** Busy CPU seconds of the whole machine (all cores). */
  busyS: number;
  /** CPU seconds of this process (all its threads). */
  selfS: number;
  /** CPU seconds of the watched child processes, by pid (dead ones keep their last value). */
  pids: Map<number, number>;
}

export interface ForeignLoad {
  /** Average cores busy over the window, all processes. */
  busyCores: number;
  /** Average cores used by processes other than the harness, the server and the generator. */
  foreignCores: number;
}

function machineBusyS(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  // cpu user nice system idle iowait irq softirq steal …
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
  return busy / CLOCK_TICKS;
}

function pidCpuS(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

export class MachineMonitor {
  private readonly samples: Sample[] = [];
  private readonly watched = new Set<number>();
  private readonly last = new Map<number, number>();
  private timer: NodeJS.Timeout | undefined;

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), 250);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Counts a child process (server, generator) as ours. */
  watch(pid: number | undefined): void {
    if (pid !== undefined && pid > 0) this.watched.add(pid);
  }

  private sample(): void {
    const usage = process.cpuUsage();
    for (const pid of this.watched) {
      const cpu = pidCpuS(pid);
      if (cpu !== undefined) this.last.set(pid, cpu);
    }
    this.samples.push({ t: epochMs(), busyS: machineBusyS(), selfS: (usage.user + usage.system) / 1e6, pids: new Map(this.last) });
    // Keep about an hour.
    if (this.samples.length > 15_000) this.samples.splice(0, 5_000);
  }

  /** Average busy and foreign cores between two epochMs() instants. */
  window(t0: number, t1: number): ForeignLoad {
    const inside = this.samples.filter((s) => s.t >= t0 && s.t <= t1);
    const a = inside[0];
    const b = inside.at(-1);
    if (!a || !b || b.t - a.t < 200) return { busyCores: Number.NaN, foreignCores: Number.NaN };
    const seconds = (b.t - a.t) / 1000;
    let ours = b.selfS - a.selfS;
    for (const [pid, cpu] of b.pids) ours += cpu - (a.pids.get(pid) ?? cpu);
    const busy = b.busyS - a.busyS;
    return { busyCores: busy / seconds, foreignCores: Math.max(0, busy - ours) / seconds };
  }

  /**
   * Waits until other processes use less than `threshold` cores over a 2 s look, at most
   * `maxS` seconds; returns the foreign load seen last (so a caller can warn).
   */
  async waitIdle(maxS: number, threshold = 0.15): Promise<{ waitedS: number; foreignCores: number }> {
    const t0 = epochMs();
    for (;;) {
      const from = epochMs();
      await sleep(2000);
      const load = this.window(from, epochMs());
      const waitedS = (epochMs() - t0) / 1000;
      if (!(load.foreignCores >= threshold) || waitedS >= maxS) return { waitedS, foreignCores: load.foreignCores };
    }
  }
}

export const CORES = availableParallelism();
