export { installRateLimit, rateLimitKey, RATE_LIMIT_EXEMPT, type RateLimitSettings } from './plugin.js';
export { redisProbe, type RedisProbe } from './redis-probe.js';
