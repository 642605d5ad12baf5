import { setTimeout as delay } from 'node:timers/promises';

/** When and for how long a back end's operations are retried after losing a lock race. */
export interface LockRetry {
  isLockError(err: unknown): boolean;
  /** Total time an operation may spend waiting for the lock. */
  budgetMs: number;
}

/**
 * Runs `fn` again while it fails on a lock, with growing jittered pauses. `fn`
 * must be safe to repeat: a whole transaction, which the failure rolled back.
 */
export async function retryOnLock<T>(fn: () => Promise<T>, policy: LockRetry | undefined): Promise<T> {
  const start = Date.now();
  for (let pause = 5; ; pause = Math.min(pause * 2, 200)) {
    try {
      return await fn();
    } catch (err) {
      if (!policy?.isLockError(err) || Date.now() - start + pause > policy.budgetMs) throw err;
      await delay(pause * (0.5 + Math.random()));
    }
  }
}
