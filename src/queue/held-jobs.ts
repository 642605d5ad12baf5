import { asError } from './errors.js';
import type { Job, JobHandler } from './job-queue.js';

/** One job in a consumer's hands, whatever the back end. */
export interface Held<T> {
  job: Job;
  /** Back-end data needed to settle the job (sqlite lease token, amqp delivery). */
  ref: T;
  controller: AbortController;
  /** Settles when the handler and the ack/nack that follows are finished. */
  settled: Promise<void>;
  /** Set when the job was given back: the handler's outcome must then be ignored. */
  returned: boolean;
}

export type Outcome = { ok: true } | { ok: false; err: Error };

/** Runs a handler, turning a throw (or a non-promise misuse) into an outcome. */
export async function runHandler(handler: JobHandler, job: Job, signal: AbortSignal): Promise<Outcome> {
  try {
    await handler(job, signal);
    return { ok: true };
  } catch (err) {
    return { ok: false, err: asError(err) };
  }
}

/**
 * The jobs a consumer holds, and the stop() protocol both back ends share: wait
 * up to a grace period for handlers to finish, then give the rest back so that
 * another worker gets them and no job is lost.
 */
export class HeldJobs<T> {
  private readonly jobs = new Map<string, Held<T>>();
  private readonly idleWaiters = new Set<() => void>();

  get size(): number {
    return this.jobs.size;
  }

  /**
   * Starts `work` for a job and tracks it until it settles. `work` gets the held
   * record, to check `returned` before it acks.
   */
  track(key: string, job: Job, ref: T, work: (held: Held<T>) => Promise<void>): Held<T> {
    const held: Held<T> = { job, ref, controller: new AbortController(), settled: Promise.resolve(), returned: false };
    this.jobs.set(key, held);
    held.settled = work(held)
      .catch(() => {}) // work reports its own errors; a tracked promise must never reject unhandled
      .finally(() => {
        this.jobs.delete(key);
        if (this.jobs.size === 0) for (const wake of this.idleWaiters) wake();
      });
    return held;
  }

  /** Waits for every held job up to graceMs, then gives back the rest (aborting their signals). */
  async drain(graceMs: number | undefined, giveBack: (held: Held<T>) => Promise<void>): Promise<void> {
    if (this.jobs.size > 0 && graceMs !== 0) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.idleWaiters.delete(done);
          resolve();
        };
        const timer = graceMs === undefined || !Number.isFinite(graceMs) ? undefined : setTimeout(done, graceMs);
        this.idleWaiters.add(done);
      });
    }
    const rest = [...this.jobs.values()];
    for (const held of rest) {
      held.returned = true;
      held.controller.abort(new Error('the consumer gave the job back'));
    }
    await Promise.all(rest.map((held) => giveBack(held).catch(() => {})));
  }
}
