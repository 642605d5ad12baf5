import { readFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { join } from 'node:path';

/** Where the kernel mounts the cgroup tree; inside a container, the container's own cgroup (cgroup namespace). */
export const CGROUP_ROOT = '/sys/fs/cgroup';

/**
 * Limits of the cgroup this process runs in; undefined where there is none
 * (no file, "max", -1, or a value too large to be a real limit).
 */
export interface CgroupLimits {
  /** CPU quota in CPUs (quota ÷ period), fractional: "150000 100000" is 1.5. */
  cpus: number | undefined;
  memoryBytes: number | undefined;
}

/** What the cgroup has used so far; undefined where the files are not there. */
export interface CgroupUsage {
  /** CPU time of every process in the cgroup since it was created, in microseconds. */
  cpuUsageUs: number | undefined;
  /** Memory in use minus inactive file cache: the working set, what the OOM killer and kubelet eviction go by. */
  memoryWorkingSetBytes: number | undefined;
}

/**
 * Anything at or above 2^60 bytes is "no limit": cgroup v1 writes an unlimited
 * memory.limit_in_bytes as the largest page-aligned 64-bit value (9223372036854771712),
 * which no machine has.
 */
const UNLIMITED_BYTES = 2 ** 60;

/** v1 mounts the CPU controllers under one of these names, depending on the distribution. */
const V1_CPU_DIRS = ['cpu', 'cpu,cpuacct', 'cpuacct,cpu'];
const V1_CPUACCT_DIRS = ['cpuacct', 'cpu,cpuacct', 'cpuacct,cpu'];

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function firstOf(root: string, dirs: string[], file: string): string | undefined {
  for (const dir of dirs) {
    const text = read(join(root, dir, file));
    if (text !== undefined) return text;
  }
  return undefined;
}

/** A positive finite number, else undefined ("max", "-1", garbage). */
function positive(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  const value = Number(text);
  return value > 0 && Number.isFinite(value) ? value : undefined;
}

function bytesLimit(text: string | undefined): number | undefined {
  const value = positive(text);
  return value !== undefined && value < UNLIMITED_BYTES ? value : undefined;
}

function cpuLimit(root: string): number | undefined {
  // v2: "<quota> <period>" or "max <period>".
  const v2 = read(join(root, 'cpu.max'));
  if (v2 !== undefined) {
    const [quota, period] = v2.split(/\s+/);
    const q = positive(quota);
    const p = positive(period ?? '100000');
    return q !== undefined && p !== undefined ? q / p : undefined;
  }
  // v1: quota -1 means none.
  const quota = positive(firstOf(root, V1_CPU_DIRS, 'cpu.cfs_quota_us'));
  const period = positive(firstOf(root, V1_CPU_DIRS, 'cpu.cfs_period_us'));
  return quota !== undefined && period !== undefined ? quota / period : undefined;
}

function memoryLimit(root: string): number | undefined {
  const v2 = read(join(root, 'memory.max'));
  if (v2 !== undefined) return bytesLimit(v2);
  return bytesLimit(read(join(root, 'memory', 'memory.limit_in_bytes')));
}

/** `key value` lines (cpu.stat, memory.stat) into a map. */
function stat(text: string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text?.split('\n') ?? []) {
    const [key, value] = line.split(/\s+/);
    if (key && value !== undefined && /^\d+$/.test(value)) out.set(key, Number(value));
  }
  return out;
}

/**
 * Reads the CPU quota and the memory limit, cgroup v2 first (cpu.max, memory.max
 * at the root), then v1 (cpu/cpu.cfs_quota_us ÷ cpu.cfs_period_us,
 * memory/memory.limit_in_bytes). Synchronous on purpose: it runs once at start,
 * before the thread layout is decided, and reads a handful of small pseudo-files.
 */
export function readCgroupLimits(root = CGROUP_ROOT): CgroupLimits {
  return { cpus: cpuLimit(root), memoryBytes: memoryLimit(root) };
}

/** The cgroup's CPU time and working set now (v2: cpu.stat, memory.current, memory.stat; v1: cpuacct.usage, memory.usage_in_bytes, memory.stat). */
export function readCgroupUsage(root = CGROUP_ROOT): CgroupUsage {
  const v2cpu = stat(read(join(root, 'cpu.stat'))).get('usage_usec');
  const v1cpuNs = positive(firstOf(root, V1_CPUACCT_DIRS, 'cpuacct.usage'));
  const cpuUsageUs = v2cpu ?? (v1cpuNs !== undefined ? v1cpuNs / 1000 : undefined);

  let memoryWorkingSetBytes: number | undefined;
  const v2current = positive(read(join(root, 'memory.current')));
  if (v2current !== undefined) {
    const inactive = stat(read(join(root, 'memory.stat'))).get('inactive_file') ?? 0;
    memoryWorkingSetBytes = Math.max(0, v2current - inactive);
  } else {
    const v1usage = positive(read(join(root, 'memory', 'memory.usage_in_bytes')));
    if (v1usage !== undefined) {
      const inactive = stat(read(join(root, 'memory', 'memory.stat'))).get('total_inactive_file') ?? 0;
      memoryWorkingSetBytes = Math.max(0, v1usage - inactive);
    }
  }
  return { cpuUsageUs, memoryWorkingSetBytes };
}

/** What this process may use: the cgroup's limit where it is lower than the host's, else the host's. */
export interface EffectiveLimits {
  /** CPUs, fractional (a 1.5-CPU quota is 1.5); never more than the CPUs this process may run on. */
  cpus: number;
  memoryBytes: number;
  /** Which of the two come from the cgroup (for the sampler: then usage comes from there too). */
  cpuFromCgroup: boolean;
  memoryFromCgroup: boolean;
}

export function effectiveLimits(
  limits: CgroupLimits = readCgroupLimits(),
  host: { cpus: number; memoryBytes: number } = { cpus: availableParallelism(), memoryBytes: totalmem() },
): EffectiveLimits {
  const cpuFromCgroup = limits.cpus !== undefined && limits.cpus < host.cpus;
  const memoryFromCgroup = limits.memoryBytes !== undefined && limits.memoryBytes < host.memoryBytes;
  return {
    cpus: cpuFromCgroup ? (limits.cpus as number) : host.cpus,
    memoryBytes: memoryFromCgroup ? (limits.memoryBytes as number) : host.memoryBytes,
    cpuFromCgroup,
    memoryFromCgroup,
  };
}

/** max_rss_bytes when it is 0: 75 % of the memory this process may use (the container's limit where lower than the machine's). */
export function defaultMaxRssBytes(limits: EffectiveLimits = effectiveLimits()): number {
  return Math.floor(limits.memoryBytes * 0.75);
}
