export * from './identity.js';
export { accessControl, type AccessControlOptions, type RouteAccessEntry } from './access-control.js';
export { createApiKeyStore, ApiKeyNameTaken, type ApiKeyInfo, type ApiKeyStore, type CreatedApiKey } from './api-keys/index.js';
export { httpsOption, tlsFiles } from './tls.js';
export { CredentialWatch, type CredentialEnd } from './session-watch.js';
export { RATE_LIMIT_EXEMPT, rateLimitKey } from './rate-limit/index.js';
export { security, type SecurityOptions } from './security.js';
