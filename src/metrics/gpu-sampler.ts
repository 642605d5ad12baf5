import { execFile } from 'node:child_process';
import type { Logger } from 'pino';
import type { Metrics } from './metrics.js';

/** The fields asked of nvidia-smi, in this order. */
export const NVIDIA_SMI_FIELDS = ['index', 'name', 'uuid', 'utilization.gpu', 'memory.used', 'memory.total', 'temperature.gpu', 'power.draw'] as const;

export const NVIDIA_SMI_ARGS = [`--query-gpu=${NVIDIA_SMI_FIELDS.join(',')}`, '--format=csv,noheader,nounits'];

/** One GPU as nvidia-smi reported it; a value it could not give ([N/A], [Not Supported]) is undefined. */
export interface GpuReading {
  /** nvidia-smi's index, as a string (the `gpu` label). */
  index: string;
  name: string;
  uuid: string;
  /** 0..1 */
  utilization?: number;
  memoryUsedBytes?: number;
  memoryTotalBytes?: number;
  temperatureCelsius?: number;
  powerWatts?: number;
}

const MIB = 1024 * 1024;

/** A number, or undefined for an empty field or nvidia-smi's "[N/A]", "[Not Supported]" and the like. */
function numberField(raw: string | undefined): number | undefined {
  const text = (raw ?? '').trim();
  if (!text || !/^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(text)) return undefined;
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}

/**
 * Parses `nvidia-smi --query-gpu=<NVIDIA_SMI_FIELDS> --format=csv,noheader,nounits`.
 * Whitespace around fields and blank lines are ignored; a name with commas in it
 * is put back together (the six fields after it are counted from the end);
 * lines that are not GPU rows (e.g. "No devices were found") are skipped.
 */
export function parseNvidiaSmi(stdout: string): GpuReading[] {
  const gpus: GpuReading[] = [];
  for (const rawLine of stdout.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (!line) continue;
    const raw = line.split(',');
    if (raw.length < NVIDIA_SMI_FIELDS.length) continue;
    const index = raw[0]!.trim();
    if (!/^\d+$/.test(index)) continue;
    const tail = raw.slice(raw.length - 6).map((p) => p.trim());
    const [uuid, util, memUsed, memTotal, temp, power] = tail as [string, string, string, string, string, string];
    const name = raw
      .slice(1, raw.length - 6)
      .join(',')
      .trim();
    const gpu: GpuReading = { index, name, uuid };
    const utilization = numberField(util);
    if (utilization !== undefined) gpu.utilization = Math.min(1, Math.max(0, utilization / 100));
    const used = numberField(memUsed);
    if (used !== undefined) gpu.memoryUsedBytes = used * MIB;
    const total = numberField(memTotal);
    if (total !== undefined) gpu.memoryTotalBytes = total * MIB;
    const temperature = numberField(temp);
    if (temperature !== undefined) gpu.temperatureCelsius = temperature;
    const watts = numberField(power);
    if (watts !== undefined) gpu.powerWatts = watts;
    gpus.push(gpu);
  }
  return gpus;
}

export type GpuMetrics = Pick<Metrics, 'gpuInfo' | 'gpuUtilization' | 'gpuMemoryUsed' | 'gpuMemoryTotal' | 'gpuTemperature' | 'gpuPower'>;

/** Replaces every GPU series with the readings (synchronously: a scrape never sees half of it). */
export function setGpuMetrics(metrics: GpuMetrics, gpus: readonly GpuReading[]): void {
  clearGpuMetrics(metrics);
  for (const g of gpus) {
    const gpu = { gpu: g.index };
    metrics.gpuInfo.set({ gpu: g.index, name: g.name, uuid: g.uuid }, 1);
    if (g.utilization !== undefined) metrics.gpuUtilization.set(gpu, g.utilization);
    if (g.memoryUsedBytes !== undefined) metrics.gpuMemoryUsed.set(gpu, g.memoryUsedBytes);
    if (g.memoryTotalBytes !== undefined) metrics.gpuMemoryTotal.set(gpu, g.memoryTotalBytes);
    if (g.temperatureCelsius !== undefined) metrics.gpuTemperature.set(gpu, g.temperatureCelsius);
    if (g.powerWatts !== undefined) metrics.gpuPower.set(gpu, g.powerWatts);
  }
}

/** Removes every GPU series (labelled gauges: reset() leaves none behind). */
export function clearGpuMetrics(metrics: GpuMetrics): void {
  metrics.gpuInfo.reset();
  metrics.gpuUtilization.reset();
  metrics.gpuMemoryUsed.reset();
  metrics.gpuMemoryTotal.reset();
  metrics.gpuTemperature.reset();
  metrics.gpuPower.reset();
}

export interface GpuSamplerOptions {
  /** nvidia-smi to run (a path, or a name looked up on PATH). */
  nvidiaSmiPath: string;
  metrics: GpuMetrics;
  logger: Logger;
  /** Kill nvidia-smi after this long (default 5 s). */
  timeoutMs?: number;
}

type GpuState = 'probing' | 'on' | 'failing' | 'off';

/**
 * GPU gauges through nvidia-smi (execFile, never a shell). The first run is a
 * probe: when nvidia-smi is missing, fails or reports no GPU, GPU sampling is
 * off for good (one info line, event gpu_sampling_off) and no GPU series ever
 * appears. A failure after that removes the GPU series (no stale values) and
 * logs one warning until a run succeeds again.
 */
export class GpuSampler {
  private state: GpuState = 'probing';
  private inFlight: Promise<void> | undefined;
  private readonly abort = new AbortController();

  constructor(private readonly opts: GpuSamplerOptions) {}

  /** False once sampling is off (no nvidia-smi or no GPU at the first probe) or stopped. */
  get enabled(): boolean {
    return this.state !== 'off' && !this.abort.signal.aborted;
  }

  /** Runs nvidia-smi once and updates the gauges; a run still in progress is not doubled. Never rejects. */
  sample(): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    this.inFlight ??= this.run().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  /** Stops sampling: kills a running nvidia-smi and waits for it. The gauges keep their last values. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.inFlight;
  }

  private async run(): Promise<void> {
    const { logger, metrics, nvidiaSmiPath } = this.opts;
    let gpus: GpuReading[];
    try {
      gpus = parseNvidiaSmi(await this.exec());
      if (gpus.length === 0) throw new Error('nvidia-smi reported no GPU');
    } catch (err) {
      if (this.abort.signal.aborted) return;
      const error = err as NodeJS.ErrnoException;
      const killed = (error as { killed?: boolean }).killed === true;
      const reason =
        error.code === 'ENOENT'
          ? `${nvidiaSmiPath} not found`
          : killed
            ? `${nvidiaSmiPath} timed out after ${this.opts.timeoutMs ?? 5000} ms`
            : error.message.split('\n')[0]!;
      if (this.state === 'probing') {
        this.state = 'off';
        logger.info({ event: 'gpu_sampling_off', nvidia_smi_path: nvidiaSmiPath, reason }, `no GPU metrics: ${reason}`);
      } else if (this.state === 'on') {
        this.state = 'failing';
        clearGpuMetrics(metrics);
        logger.warn({ event: 'gpu_sampling_failed', nvidia_smi_path: nvidiaSmiPath, reason }, `GPU metrics unavailable: ${reason}`);
      }
      return;
    }
    if (this.abort.signal.aborted) return;
    if (this.state === 'probing') {
      logger.info({ event: 'gpu_sampling_on', gpus: gpus.map((g) => `${g.index}: ${g.name}`) }, `GPU metrics from ${nvidiaSmiPath}: ${gpus.length} GPU(s)`);
    } else if (this.state === 'failing') {
      logger.info({ event: 'gpu_sampling_resumed' }, 'GPU metrics available again');
    }
    this.state = 'on';
    setGpuMetrics(metrics, gpus);
  }

  private exec(): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(
        this.opts.nvidiaSmiPath,
        NVIDIA_SMI_ARGS,
        {
          encoding: 'utf8',
          timeout: this.opts.timeoutMs ?? 5000,
          killSignal: 'SIGKILL',
          maxBuffer: 1024 * 1024,
          windowsHide: true,
          signal: this.abort.signal,
        },
        (err, stdout, stderr) => {
          if (err) {
            // "Command failed: <command line>\n<stderr>" says little: exit code and nvidia-smi's own words instead.
            const detail = (stderr.trim() || stdout.trim()).split('\n')[0]?.trim();
            if (typeof err.code === 'number') err.message = `${this.opts.nvidiaSmiPath} exited with code ${err.code}${detail ? `: ${detail}` : ''}`;
            reject(err);
          } else {
            resolve(stdout);
          }
        },
      );
    });
  }
}
