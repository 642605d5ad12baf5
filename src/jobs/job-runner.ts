import type { Logger } from 'pino';
import type { Consumer, JobHandler, JobQueue } from '../queue/index.js';

/** The job consumer loop that `sightline worker` (and `serve` with worker=true) runs. */
export interface JobRunner {
  /** Stops taking jobs; jobs in hand finish (or go back to the queue after graceMs). */
  stop(graceMs: number): Promise<void>;
}

/**
 * Consumes jobs once the queue is reachable, retrying the start with backoff so a
 * broker that comes up late (or a model still warming up) never needs a restart.
 */
export function startJobRunner(queue: JobQueue, handler: JobHandler, concurrency: number, logger: Logger, ready: Promise<unknown>): JobRunner {
  let consumer: Consumer | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const attempt = async (delayMs: number): Promise<void> => {
    if (stopped) return;
    try {
      await ready;
      await queue.waitUntilReady();
      if (stopped) return;
      consumer = await queue.consume(handler, { concurrency });
      logger.info({ event: 'worker_started', queue: queue.kind, concurrency }, `worker consuming ${queue.kind} jobs, ${concurrency} at a time`);
    } catch (err) {
      logger.warn({ event: 'worker_waiting', err, retry_ms: delayMs }, `worker cannot start yet: ${(err as Error).message}`);
      timer = setTimeout(() => void attempt(Math.min(delayMs * 2, 30_000)), delayMs);
      timer.unref();
    }
  };
  void attempt(500);
  return {
    async stop(graceMs) {
      stopped = true;
      if (timer) clearTimeout(timer);
      await consumer?.stop({ graceMs });
    },
  };
}
