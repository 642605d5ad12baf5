import { Redis } from 'ioredis';

export interface RedisProbe {
  /** A PING round trip; throws while Redis is unreachable. */
  probe(): Promise<string>;
  close(): Promise<void>;
}

/**
 * Reachability of the rate-limit Redis for /readyz (a non-critical check: the
 * limiter falls back to per-process buckets). A connection of its own, so that
 * the check does not depend on the app having been built.
 */
export function redisProbe(url: string, timeoutMs = 1000): RedisProbe {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: timeoutMs,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
  });
  redis.on('error', () => undefined);
  return {
    async probe() {
      if (redis.status !== 'ready') throw new Error(`not connected (${redis.status}): rate limits are per process meanwhile`);
      await redis.ping();
      return 'buckets shared by every replica';
    },
    async close() {
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}
