import type { FastifyBaseLogger } from 'fastify';
import type { RedisTokenBuckets } from './redis-buckets.js';
import type { Take, TokenBuckets } from './token-bucket.js';

export interface FailOpenOptions {
  shared: RedisTokenBuckets;
  /** Answers while the shared buckets cannot: this process's own. */
  local: TokenBuckets;
  logger: FastifyBaseLogger;
  /** Called on every take Redis did not answer (the backend-errors counter). */
  onError?: () => void;
}

/**
 * Shared buckets that never refuse a request because Redis is away: a take that
 * fails is answered by this process's own buckets instead (the limit degrades to
 * per process, N replicas allowing N × the rate, rather than to none). One warning
 * per outage and one line when Redis answers again, not one per request.
 */
export class FailOpenBuckets {
  #down = false;

  constructor(private readonly options: FailOpenOptions) {}

  async take(key: string): Promise<Take> {
    const { shared, local, logger } = this.options;
    try {
      const take = await shared.take(key);
      if (this.#down) {
        this.#down = false;
        logger.info({ event: 'rate_limit_backend_up' }, 'rate-limit Redis answers again: buckets are shared by every replica');
      }
      return take;
    } catch (err) {
      this.options.onError?.();
      if (!this.#down) {
        this.#down = true;
        logger.warn(
          { event: 'rate_limit_backend_down', err },
          `rate-limit Redis unreachable (${(err as Error).message}): limiting per process until it is back`,
        );
      }
      return local.take(key);
    }
  }
}
