export * from './api-key-store.js';
export { KyselyApiKeyStore } from './kysely-api-key-store.js';
export { KEY_PREFIX, parseKey } from './key-format.js';
export { createApiKeyStore, type ApiKeyStoreOptions } from './create-store.js';
