/** How a {@link StreamConnection} waits between reconnect attempts. */
export interface ReconnectOptions {
  /** Cap of the first wait, in ms. Default 250. */
  initialDelayMs: number;
  /** Cap of every wait, in ms: the doubling stops here. Default 10 000. */
  maxDelayMs: number;
  /**
   * Share of each wait that is random, in [0, 1]. 1 (default) is "full jitter": the
   * wait is uniform in (0, cap], so that many clients cut off together do not come
   * back together; 0 waits exactly the cap.
   */
  jitter: number;
  /** Attempts after one connection is lost before giving up for good. Default: never give up. */
  maxAttempts: number;
}

export const DEFAULT_RECONNECT: ReconnectOptions = {
  initialDelayMs: 250,
  maxDelayMs: 10_000,
  jitter: 1,
  maxAttempts: Number.POSITIVE_INFINITY,
};

/** Fills in defaults and checks the values; throws RangeError on nonsense. */
export function reconnectOptions(options: Partial<ReconnectOptions> = {}): ReconnectOptions {
  const merged = { ...DEFAULT_RECONNECT, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  if (!(merged.initialDelayMs >= 0)) throw new RangeError(`reconnect.initialDelayMs must be >= 0, not ${merged.initialDelayMs}`);
  if (!(merged.maxDelayMs >= merged.initialDelayMs)) throw new RangeError(`reconnect.maxDelayMs must be >= initialDelayMs, not ${merged.maxDelayMs}`);
  if (!(merged.jitter >= 0 && merged.jitter <= 1)) throw new RangeError(`reconnect.jitter must lie in [0, 1], not ${merged.jitter}`);
  if (!(merged.maxAttempts >= 1)) throw new RangeError(`reconnect.maxAttempts must be >= 1, not ${merged.maxAttempts}`);
  return merged;
}

/**
 * The cap of reconnect attempt `attempt` (0 for the first): `initialDelayMs · 2^attempt`,
 * never above `maxDelayMs`.
 */
export function backoffCap(attempt: number, options: Pick<ReconnectOptions, 'initialDelayMs' | 'maxDelayMs'>): number {
  // 2^attempt overflows to Infinity for large attempts; min() keeps the cap.
  return Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** Math.max(0, attempt));
}

/**
 * The wait before reconnect attempt `attempt` (0 for the first), exponential with
 * jitter: `cap · (1 − jitter · random())` with `cap` from {@link backoffCap}, so that
 * it lies in `[cap · (1 − jitter), cap]`.
 */
export function backoffDelay(
  attempt: number,
  options: Pick<ReconnectOptions, 'initialDelayMs' | 'maxDelayMs' | 'jitter'>,
  random: () => number = Math.random,
): number {
  const cap = backoffCap(attempt, options);
  return cap * (1 - options.jitter * random());
}
