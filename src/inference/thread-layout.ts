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
 * Instances × intra-op threads that fit the cores. Under load, single-threaded
 * sessions in worker threads of their own beat one session with several threads
 * on CPU (measured: bench/layout.ts, docs/batching.md#thread-layout), so with both
 * unset every core gets an instance; the lone request's latency is the
 * lone-request session's job (loneRequestThreads).
 */
export function threadLayout(instances: number, intraOpThreads: number, cores = layoutCores()): { instances: number; intraOpThreads: number } {
  if (instances > 0 && intraOpThreads > 0) return { instances, intraOpThreads };
  if (instances > 0) return { instances, intraOpThreads: Math.max(1, Math.floor(cores / instances)) };
  if (intraOpThreads > 0) return { instances: Math.max(1, Math.floor(cores / intraOpThreads)), intraOpThreads };
  return { instances: cores, intraOpThreads: 1 };
}

/**
 * Threads of the lone-request session (lone_request_threads): 0 means every core
 * when an instance has fewer, so that a part arriving at an idle model is not
 * left on one core while the others wait; 1 turns the session off (returns 0).
 */
export function loneRequestThreads(configured: number, intraOpThreads: number, cores = layoutCores()): number {
  if (configured === 1) return 0;
  if (configured > 1) return configured;
  return cores > intraOpThreads ? cores : 0;
}
