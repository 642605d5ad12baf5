import { availableParallelism } from 'node:os';

/**
 * Instances × intra-op threads that fit the cores. Two single-threaded sessions
 * in two worker threads beat one session with two threads on CPU (measured:
 * bench/results, docs/batching.md), so with both unset every core gets an instance.
 */
export function threadLayout(instances: number, intraOpThreads: number, cores = availableParallelism()): { instances: number; intraOpThreads: number } {
  if (instances > 0 && intraOpThreads > 0) return { instances, intraOpThreads };
  if (instances > 0) return { instances, intraOpThreads: Math.max(1, Math.floor(cores / instances)) };
  if (intraOpThreads > 0) return { instances: Math.max(1, Math.floor(cores / intraOpThreads)), intraOpThreads };
  return { instances: cores, intraOpThreads: 1 };
}
