import { setFlagsFromString } from 'node:v8';
import type { Logger } from 'pino';

/**
 * V8's old-generation growth for a server process (config heap_growing_percent).
 *
 * Why: on a busy server every request's objects wait in the queue long enough to be
 * promoted, so the old generation grows steadily, and V8's own growth factor settled
 * near 1.6 there (38 MB kept, the next full collection due at 61 MB). V8 starts
 * incremental marking once that slack is smaller than its young generation, so it
 * started again within moments of each full collection: a Mark-Compact every
 * 300–400 ms, 2–3 ms of CPU per request on the 2-core bench machine (320 model,
 * 1280×720 JPEGs, c=16). A fixed factor of 3 (200 %) spaces them 2–3 s apart for about
 * 20 MiB more memory (docs/batching.md#memory).
 *
 * The flag is read at every collection, so setting it at startup takes effect from the
 * next one. Node started with its own --heap-growing-percent keeps it.
 */
export function applyHeapGrowth(percent: number, execArgv: readonly string[] = process.execArgv): 'set' | 'node-flag' | 'v8-default' {
  if (execArgv.some((arg) => /^--heap[-_]growing[-_]percent\b/.test(arg))) return 'node-flag';
  if (percent === 0) return 'v8-default';
  setFlagsFromString(`--heap-growing-percent=${percent}`);
  return 'set';
}

/** applyHeapGrowth at startup, and a log line that says what the heap grows by. */
export function logHeapGrowth(logger: Logger, percent: number): void {
  const how = applyHeapGrowth(percent);
  const says = { set: `V8 heap growth ${percent} %`, 'node-flag': 'V8 heap growth from node --heap-growing-percent', 'v8-default': "V8 heap growth: V8's own" };
  logger.info({ event: 'heap_growth', heap_growing_percent: how === 'set' ? percent : null, source: how }, says[how]);
}
