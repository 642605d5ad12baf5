import type { Identity, Role } from '../identity.js';

/** An API key as listed: everything but its secret, which is never kept. */
export interface ApiKeyInfo {
  id: string;
  name: string;
  roles: Role[];
  created_at: Date;
  /** When it was revoked; null while it is active. */
  revoked_at: Date | null;
}

/** What `create` returns: the key itself is shown this once and cannot be read back. */
export interface CreatedApiKey extends ApiKeyInfo {
  /** `sl_<id>_<secret>`: what clients send. */
  key: string;
}

/**
 * API keys, kept hashed in the result store's database so that every replica and
 * the CLI see the same keys. `verify` reads the database on every call, so a
 * revocation (from any process) takes effect with the next request.
 * @example
 * const { key } = await keys.create('line-3-camera', ['ingest']);
 * await keys.verify(key); // { name: 'line-3-camera', via: 'api_key', roles: ['ingest'], keyId: '…' }
 * await keys.revoke('line-3-camera');
 * await keys.verify(key); // undefined
 */
export interface ApiKeyStore {
  readonly kind: 'sqlite' | 'postgres';
  /** Creates the tables when missing; rejects with STORE_UNAVAILABLE when the database cannot be reached. */
  waitUntilReady(): Promise<void>;
  /** A new key with these roles. Names are unique among active keys (ApiKeyNameTaken). */
  create(name: string, roles: readonly Role[]): Promise<CreatedApiKey>;
  /** The identity of an active key; undefined for anything else (malformed, unknown, wrong secret, revoked). */
  verify(presentedKey: string): Promise<Identity | undefined>;
  /**
   * Which of these key ids are still active (not revoked, not deleted): one
   * read for every open WebSocket session, so that a revocation from any
   * process ends them.
   */
  activeIds(ids: readonly string[]): Promise<Set<string>>;
  /** Revokes the active key with this id, else the active key with this name; returns it, or undefined when none. */
  revoke(idOrName: string): Promise<ApiKeyInfo | undefined>;
  /** Active keys (every key with `includeRevoked`), oldest first. */
  list(options?: { includeRevoked?: boolean }): Promise<ApiKeyInfo[]>;
  /** Idempotent; never closes a pool that the caller passed in. */
  close(): Promise<void>;
}

/** `create` with a name that an active key already has. */
export class ApiKeyNameTaken extends Error {
  readonly code = 'API_KEY_NAME_TAKEN';
  constructor(name: string) {
    super(`an active API key is already named ${JSON.stringify(name)}: revoke it first or choose another name`);
    this.name = 'ApiKeyNameTaken';
  }
}

/** Key names: like line ids, 1–64 characters of A–Z a–z 0–9 . _ - @ : (first a letter or digit). */
export const KEY_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}$/;
