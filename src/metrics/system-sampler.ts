import { cpus, freemem } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import type { Metrics } from './metrics.js';
import { GpuSampler } from './gpu-sampler.js';
import { CGROUP_ROOT, effectiveLimits, readCgroupLimits, readCgroupUsage, type EffectiveLimits } from './cgroup.js';

/** Timer resolution of the event-loop delay monitor, in ms; subtracted from its readings. */
const LAG_RESOLUTION_MS = 10;

export interface SystemSamplerOptions {
  metrics: Metrics;
  logger: Logger;
  /** config.system_sample_interval_ms */
  intervalMs: number;
  /** config.nvidia_smi_path; empty: no GPU sampling. */
  nvidiaSmiPath: string;
  /** What the process may use (the container's limits where lower than the host's); read from cgroupRoot when left out. */
  limits?: EffectiveLimits;
  /** Where the cgroup files are (tests point it at fixtures). */
  cgroupRoot?: string;
}

export interface SystemSampler {
  /** Takes one sample now (system gauges at once, GPU gauges when nvidia-smi has answered). */
  sample(): Promise<void>;
  /** Stops the timer and the event-loop monitor and waits for a running nvidia-smi. Idempotent. */
  stop(): Promise<void>;
}

interface CpuTimes {
  busy: number;
  total: number;
}

/** Busy and total CPU time of the whole machine since boot (ms, summed over CPUs); undefined where os.cpus() knows none. */
function machineCpuTimes(): CpuTimes | undefined {
  const list = cpus();
  if (list.length === 0) return undefined;
  let busy = 0;
  let total = 0;
  for (const { times } of list) {
    const all = times.user + times.nice + times.sys + times.idle + times.irq;
    total += all;
    busy += all - times.idle;
  }
  return { busy, total };
}

const ratio = (value: number) => Math.min(1, Math.max(0, value));

/** The registry's gauge of that name, or a new one: a second sampler on one registry (tests) must not throw. */
function gauge(registry: Registry, name: string, help: string): Gauge {
  return (registry.getSingleMetric(name) as Gauge | undefined) ?? new Gauge({ name, help, registers: [registry] });
}

/** The limits the other gauges are measured against, for dashboards (utilization × limit = CPUs in use). */
function recordLimits(registry: Registry, limits: EffectiveLimits): void {
  gauge(
    registry,
    'sightline_cpu_limit_cores',
    "CPUs this process may use: the container's CPU quota (cgroup) where lower than the machine's CPUs, else those; fractional.",
  ).set(limits.cpus);
  gauge(
    registry,
    'sightline_memory_limit_bytes',
    "Memory this process may use: the container's memory limit (cgroup) where lower than the machine's memory, else that.",
  ).set(limits.memoryBytes);
}

/**
 * Samples CPU, memory and event-loop lag every intervalMs into the sightline_*
 * system gauges, and the GPUs through nvidia-smi (see GpuSampler). The first
 * sample is taken at start: its CPU figures cover the time since the process
 * started (process CPU) and since boot (machine CPU); later ones the last interval.
 *
 * In a container with a CPU quota or a memory limit (cgroup v1 or v2) the
 * "system" is the container: utilization is measured against the quota and
 * memory against the limit, with the cgroup's own usage, because the host's
 * figures say nothing about how close the container is to being throttled or
 * OOM-killed. Limits are read once, at start.
 */
export function startSystemSampler(opts: SystemSamplerOptions): SystemSampler {
  const { metrics, logger, intervalMs } = opts;
  const cgroupRoot = opts.cgroupRoot ?? CGROUP_ROOT;
  const limits = opts.limits ?? effectiveLimits(readCgroupLimits(cgroupRoot));
  const cores = Math.max(0.01, limits.cpus);
  recordLimits(metrics.registry, limits);
  const lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
  lag.enable();
  const gpu = opts.nvidiaSmiPath
    ? new GpuSampler({ nvidiaSmiPath: opts.nvidiaSmiPath, metrics, logger, timeoutMs: Math.min(10_000, Math.max(2_000, intervalMs)) })
    : undefined;

  // Baselines: process start for process CPU, boot for the machine.
  let lastWall = performance.now() - process.uptime() * 1000;
  let lastCpu: NodeJS.CpuUsage = { user: 0, system: 0 };
  let lastMachine: CpuTimes | undefined = { busy: 0, total: 0 };
  // The cgroup may be older than this process: its first reading is only the baseline.
  let lastCgroupUs: number | undefined;
  let lastCgroupWall = lastWall;
  let stopped = false;

  const sampleSystem = () => {
    const now = performance.now();
    const cpu = process.cpuUsage();
    const wallUs = (now - lastWall) * 1000;
    if (wallUs > 0) metrics.cpuUtilization.set(ratio((cpu.user - lastCpu.user + cpu.system - lastCpu.system) / wallUs / cores));
    lastWall = now;
    lastCpu = cpu;

    const usage = limits.cpuFromCgroup || limits.memoryFromCgroup ? readCgroupUsage(cgroupRoot) : undefined;
    if (limits.cpuFromCgroup && usage?.cpuUsageUs !== undefined) {
      if (lastCgroupUs !== undefined && now > lastCgroupWall) {
        metrics.systemCpuUtilization.set(ratio((usage.cpuUsageUs - lastCgroupUs) / ((now - lastCgroupWall) * 1000) / cores));
      }
      lastCgroupUs = usage.cpuUsageUs;
      lastCgroupWall = now;
    } else {
      const machine = machineCpuTimes();
      if (machine && lastMachine) {
        const total = machine.total - lastMachine.total;
        if (total > 0) metrics.systemCpuUtilization.set(ratio((machine.busy - lastMachine.busy) / total));
      }
      lastMachine = machine;
    }

    const rss = process.memoryUsage.rss();
    metrics.memoryRss.set(rss);
    const total = limits.memoryBytes;
    metrics.systemMemoryTotal.set(total);
    // Where the working set cannot be read, this process's RSS is the best lower bound the container has.
    const used = limits.memoryFromCgroup ? (usage?.memoryWorkingSetBytes ?? rss) : total - freemem();
    metrics.systemMemoryUsed.set(Math.min(total, Math.max(0, used)));

    // No tick at all in the interval leaves the last value (nothing was measured).
    // (After reset() the monitor skips its next tick, so a block in the first
    // ~10 ms after a sample counts in neither interval: fine for a p99 gauge.)
    if (lag.count > 0) metrics.eventLoopLag.set(Math.max(0, lag.percentile(99) / 1e6 - LAG_RESOLUTION_MS) / 1000);
    lag.reset();
  };

  const sample = async () => {
    if (stopped) return;
    try {
      sampleSystem();
    } catch (err) {
      logger.warn({ event: 'system_sampling_failed', err }, `system metrics: ${(err as Error).message}`);
    }
    await gpu?.sample();
  };

  void sample();
  const timer = setInterval(() => void sample(), intervalMs);
  timer.unref();

  return {
    sample,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      lag.disable();
      await gpu?.stop();
    },
  };
}
