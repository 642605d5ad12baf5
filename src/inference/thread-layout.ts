import { availableParallelism } from 'node:os';

/**
 * Whole cores for the layout from the CPUs this process may use, which a
 * container's quota makes fractional (1.5 for cpu.max "150000 100000"). Rounded
 * down, never below 1: two busy single-threaded instances on a 1.5-CPU quota
 * exhaust it in every scheduler period and are throttled for the rest of it,
 * which shows as latency spikes of up to the period (100 ms) rather than as
 * more throughput; one instance keeps the half CPU for decoding and the event
 * loop. (Go's automaxprocs rounds GOMAXPROCS the same way.)
 */
export function layoutCores(cpus: number = availableParallelism()): number {
  return Math.max(1, Math.floor(cpus));
}

/**
 * Instances × intra-op threads that fit the cores. Two single-threaded sessions
 * in two worker threads beat one session with two threads on CPU (measured:
 * bench/results, docs/batching.md), so with both unset every core gets an instance.
 */
export function threadLayout(instances: number, intraOpThreads: number, cores = layoutCores()): { instances: number; intraOpThreads: number } {
  if (instances > 0 && intraOpThreads > 0) return { instances, intraOpThreads };
  if (instances > 0) return { instances, intraOpThreads: Math.max(1, Math.floor(cores / instances)) };
  if (intraOpThreads > 0) return { instances: Math.max(1, Math.floor(cores / intraOpThreads)), intraOpThreads };
  return { instances: cores, intraOpThreads: 1 };
}
