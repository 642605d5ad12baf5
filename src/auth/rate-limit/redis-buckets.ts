import { Redis } from 'ioredis';
import type { Take } from './token-bucket.js';

/**
 * One take from a bucket, atomically: Redis runs a script alone, so requests
 * from every replica on one key are serialised there. Time comes from Redis
 * (`TIME`), not from the callers, so replicas with skewed clocks still agree on
 * how much a bucket has refilled. The state is `tokens` (fractional) and `at`
 * (ms) in a hash that expires once the bucket would be full again: a full
 * bucket and no bucket are the same. Same arithmetic as TokenBuckets.take().
 */
const TAKE_SCRIPT = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = burst
if state[1] and state[2] then
  local elapsed = now - tonumber(state[2])
  if elapsed < 0 then elapsed = 0 end
  tokens = math.min(burst, tonumber(state[1]) + elapsed / 1000 * rate)
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
local msPerToken = 1000 / rate
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * msPerToken) + 1000)
local reset
if allowed == 1 then
  reset = math.ceil((burst - tokens) * msPerToken)
else
  reset = math.ceil((1 - tokens) * msPerToken)
end
return {allowed, math.floor(tokens), reset}
`;

/** Prepended to every bucket key (after a `keyPrefix` the URL may give: `redis://host/0?keyPrefix=site-a:`). */
export const BUCKET_KEY_PREFIX = 'sightline:ratelimit:';

export interface RedisBucketOptions {
  /** Longest wait for one take; past it the caller treats Redis as unreachable. */
  commandTimeoutMs?: number;
}

type TakeCommand = (key: string, rate: number, burst: number) => Promise<[number, number, number]>;

/**
 * Token buckets kept in Redis, shared by every process that uses the same
 * Redis database (and key prefix). A take fails at once while Redis is not
 * connected (no offline queue: a request must never wait for a reconnect) and
 * after commandTimeoutMs when Redis does not answer; ioredis reconnects by itself.
 */
export class RedisTokenBuckets {
  readonly redis: Redis;
  readonly #take: TakeCommand;
  readonly #timeoutMs: number;
  /** Until the first connection: requests of a process that has just started wait for it (bounded) instead of failing open. */
  #firstConnect: Promise<void> | undefined;

  constructor(
    url: string,
    readonly ratePerSecond: number,
    readonly burst: number,
    options: RedisBucketOptions = {},
  ) {
    if (!(ratePerSecond > 0) || !(burst >= 1)) throw new RangeError('a token bucket needs ratePerSecond > 0 and burst >= 1');
    this.#timeoutMs = options.commandTimeoutMs ?? 500;
    this.redis = new Redis(url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: this.#timeoutMs,
      // Reconnect for ever, at most every 2 s: the limiter must come back on its own after an outage.
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    });
    // ioredis emits 'error' on every failed reconnect; the caller counts failed takes instead.
    this.redis.on('error', () => undefined);
    // defineCommand sends EVALSHA and falls back to EVAL when Redis does not know the script (after a restart or SCRIPT FLUSH).
    this.redis.defineCommand('sightlineTakeToken', { numberOfKeys: 1, lua: TAKE_SCRIPT });
    const command = (this.redis as unknown as Record<string, TakeCommand>).sightlineTakeToken!;
    this.#take = command.bind(this.redis);
    this.#firstConnect = new Promise<void>((resolve) => this.redis.once('ready', resolve)).then(() => {
      this.#firstConnect = undefined;
    });
  }

  async take(key: string): Promise<Take> {
    if (this.#firstConnect) await Promise.race([this.#firstConnect, new Promise((r) => setTimeout(r, this.#timeoutMs).unref())]);
    const [allowed, remaining, resetMs] = await this.#take(BUCKET_KEY_PREFIX + key, this.ratePerSecond, this.burst);
    return { allowed: allowed === 1, remaining, resetMs };
  }

  /** A round trip, for a readiness check. */
  async probe(): Promise<string> {
    await this.redis.ping();
    return 'connected';
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
