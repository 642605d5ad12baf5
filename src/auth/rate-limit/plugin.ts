import type { FastifyInstance, FastifyRequest } from 'fastify';
import rateLimit, { normalizeIP, type FastifyRateLimitStore, type FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import { Counter, type Registry } from 'prom-client';
import { Errors } from '../../errors.js';
import { FailOpenBuckets } from './fail-open.js';
import { RedisTokenBuckets } from './redis-buckets.js';
import { TokenBuckets, type Take } from './token-bucket.js';

/** Probe and scrape endpoints answer whatever a client does: never rate limited. */
export const RATE_LIMIT_EXEMPT: ReadonlySet<string> = new Set(['/livez', '/readyz', '/metrics']);

export interface RateLimitSettings {
  /** Sustained requests per second per key; 0 turns rate limiting off. */
  ratePerSecond: number;
  /** Bucket size: requests a key may send at once. */
  burst: number;
  /** Called on every refused request (metrics). */
  onLimited?: (request: FastifyRequest) => void;
  /**
   * Redis (`redis://host:6379/0`) holding the buckets, shared by every replica;
   * empty: buckets in this process. Left out: the app's `rate_limit_url`.
   */
  url?: string;
  /** Where `sightline_rate_limit_backend_errors_total` goes; left out: the app's metrics registry. */
  registry?: Registry;
}

/** Whatever answers takes: this process's buckets, or Redis's with this process's as the fallback. */
interface Buckets {
  readonly burst: number;
  take(key: string): Take | Promise<Take>;
}

const kRetryAfter = Symbol('sightline.retryAfter');
type Marked = FastifyRequest & { [kRetryAfter]?: number };

/**
 * Whose bucket a request draws from: the API key's name or the JWT's subject
 * when it has one, else its address (IPv6 by /64, as @fastify/rate-limit does).
 */
export function rateLimitKey(request: FastifyRequest): string {
  const identity = request.identity;
  if (identity?.via === 'api_key') return `key:${identity.name}`;
  if (identity?.via === 'jwt') return `jwt:${identity.name}`;
  return `addr:${normalizeIP(request.ip)}`;
}

/**
 * @fastify/rate-limit's own stores count requests in fixed windows: they cannot
 * let a client send `burst` requests at once and then `ratePerSecond`
 * sustained without also allowing 2 × max around a window boundary. This store
 * answers the plugin's `incr` from token buckets instead: `current` is how full
 * the client's quota is (burst − tokens left, burst + 1 when refused) and `ttl`
 * the time until the bucket is full again (until the next token when refused),
 * which the plugin turns into RateLimit-Remaining/Reset and Retry-After.
 */
function tokenBucketStore(buckets: Buckets): FastifyRateLimitStoreCtor {
  const answer = (take: Take) => ({ current: take.allowed ? buckets.burst - take.remaining : buckets.burst + 1, ttl: take.resetMs });
  return class TokenBucketStore implements FastifyRateLimitStore {
    incr(key: string, callback: (error: Error | null, result?: { current: number; ttl: number }) => void): void {
      const take = buckets.take(key);
      if (take instanceof Promise) take.then((t) => callback(null, answer(t)), callback);
      else callback(null, answer(take));
    }

    child(): FastifyRateLimitStore {
      return this;
    }
  };
}

/**
 * Per-client token buckets in front of every route but RATE_LIMIT_EXEMPT, for
 * every caller but trusted loopback ones: 429
 * RATE_LIMITED with Retry-After and the RateLimit-Limit/Remaining/Reset headers
 * (IETF draft names). Runs as an onRequest hook after the auth hook (it needs the
 * identity). Without a Redis URL the buckets live in this process and N replicas
 * allow N × the rate; with one, every replica draws from the same bucket per key.
 */
export async function installRateLimit(app: FastifyInstance, settings: RateLimitSettings): Promise<void> {
  if (settings.ratePerSecond <= 0) return;
  const local = new TokenBuckets(settings.ratePerSecond, settings.burst);
  const url = settings.url ?? app.sightline?.config.rate_limit_url ?? '';
  const buckets: Buckets = url ? sharedBuckets(app, settings, url, local) : local;
  await app.register(rateLimit, {
    global: false,
    store: tokenBucketStore(buckets),
    max: settings.burst,
    timeWindow: 1000,
    enableDraftSpec: true,
    keyGenerator: rateLimitKey,
    onExceeded: (request) => settings.onLimited?.(request),
    errorResponseBuilder: (request, context) => {
      const seconds = Math.max(1, Math.ceil(context.ttl / 1000));
      (request as Marked)[kRetryAfter] = seconds;
      return new Errors.RATE_LIMITED(`more than ${settings.ratePerSecond}/s (burst ${settings.burst}) for ${rateLimitKey(request)}; retry in ${seconds} s`);
    },
  });
  const limit = app.rateLimit();
  app.addHook('onRequest', async function rateLimited(request, reply) {
    if (RATE_LIMIT_EXEMPT.has(request.routeOptions.url ?? '')) return;
    // The local operator (loopback without credentials in auth=auto) is trusted like it is by auth:
    // the simulator, benchmarks and camera software on the same PC are not throttled.
    if (request.identity?.via === 'loopback') return;
    await limit.call(this, request, reply);
  });
  // The error handler gives every retryable error `Retry-After: 1`; a 429 says
  // when the client's next token is there instead.
  app.addHook('onSend', async (request, reply) => {
    const seconds = (request as Marked)[kRetryAfter];
    if (seconds !== undefined && reply.statusCode === 429) reply.header('retry-after', String(seconds));
  });
}

/** Buckets in Redis, answered by `local` while Redis is away; closed with the app. */
function sharedBuckets(app: FastifyInstance, settings: RateLimitSettings, url: string, local: TokenBuckets): Buckets {
  const shared = new RedisTokenBuckets(url, settings.ratePerSecond, settings.burst);
  app.addHook('onClose', async () => shared.close());
  const registry = settings.registry ?? app.sightline?.metrics.registry;
  const errors = registry
    ? new Counter({
        name: 'sightline_rate_limit_backend_errors_total',
        help: 'Rate-limit takes the Redis backend did not answer (refused, timed out, disconnected); each was answered by the per-process buckets.',
        registers: [registry],
      })
    : undefined;
  const failOpen = new FailOpenBuckets({ shared, local, logger: app.log, onError: () => errors?.inc() });
  return { burst: settings.burst, take: (key) => failOpen.take(key) };
}
