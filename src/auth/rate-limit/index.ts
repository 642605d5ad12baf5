export { installRateLimit, rateLimitKey, RATE_LIMIT_EXEMPT, type RateLimitSettings } from './plugin.js';
