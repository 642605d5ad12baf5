import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Dropped buffers a model thread lets pile up before it collects them: about one run's
 * worth at 640 (1.2 MB of pixels, 2.7 MB of output). Measured at 640, c=16 (two rounds,
 * against no collection: RSS peak 517 and 517 MiB): 16 MiB gave 502–503, 4 MiB 478–484,
 * with throughput unchanged; a full collection instead of a young one did no better.
 */
export const THREAD_GARBAGE_LIMIT_BYTES = 4 * 1024 * 1024;

type Collect = (options?: { type?: 'minor' | 'major' }) => void;

let collect: Collect | undefined;

/**
 * Counts the buffers a model thread has dropped and collects them once they add up
 * to `limitBytes`. Every run leaves its input pixels (transferred in) and its output
 * tensor (onnxruntime-node copies each output into a fresh ArrayBuffer and ignores
 * pre-allocated ones), megabytes per run; the thread allocates almost no JS objects
 * of its own, so V8 would collect only once 64 MiB of such external memory had piled
 * up, in each thread (a full collection after every run took 40–60 MiB off the RSS of a
 * 640 server under load). A young-generation collection frees them in under a millisecond.
 *
 * Written here (three lines, the `expose-gc` package's way) because Node has no public
 * call for a collection without --expose-gc: the flag is set at run time and `gc` read
 * from a fresh context, which then collects this thread's heap.
 */
export function garbageCounter(limitBytes = THREAD_GARBAGE_LIMIT_BYTES): (droppedBytes: number) => void {
  if (!collect) {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as Collect;
  }
  const gc = collect;
  let dropped = 0;
  return (droppedBytes) => {
    dropped += droppedBytes;
    if (dropped < limitBytes) return;
    dropped = 0;
    gc({ type: 'minor' });
  };
}
