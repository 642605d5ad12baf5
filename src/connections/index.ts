export * from './types.js';
export { declaredKind, isHighPriority, isProbe, keyOf, kindFromIdentity, mayClaimReserve, normalizeAddress, SYSTEM_ROUTES } from './classify.js';
export {
  ConnectionRegistry,
  CLOSED_BY_ADMIN,
  type ConnectionEntry,
  type KindSource,
  type RegistryOptions,
  type RequestFacts,
  type TrackedSocket,
} from './registry.js';
export { connectionsPlugin, limitsFromConfig, requestKind } from './plugin.js';
export { applyServerSettings, checkingInterval, clientErrorHandler, connectionServerOptions, httpServerSettings, type ClientErrorContext } from './server.js';
