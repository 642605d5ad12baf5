import type { Kysely } from 'kysely';
import type { LockRetry } from '../../store/lock-retry.js';
import { OwnTables } from '../../store/own-tables.js';
import { ROLES, type Identity, type Role } from '../identity.js';
import { ApiKeyNameTaken, KEY_NAME_PATTERN, type ApiKeyInfo, type ApiKeyStore, type CreatedApiKey } from './api-key-store.js';
import { apiKeyMigrations } from './migrations.js';
import { hashSecret, newKey, parseKey, secretMatches } from './key-format.js';

export interface ApiKeysTable {
  api_keys: {
    id: string;
    name: string;
    roles: string;
    secret_hash: string;
    /** pg returns BIGINT as a string. */
    created_at: number | string;
    revoked_at: number | string | null;
  };
}

export interface KyselyApiKeyStoreOptions {
  kind: 'sqlite' | 'postgres';
  /** Owned: destroyed by close(). A back end that borrows a pool hands in a Kysely whose pool end() is a no-op. */
  db: Kysely<ApiKeysTable>;
  /** PostgreSQL schema holding the table and its migration bookkeeping. */
  schema?: string;
  /** Retry of writes that lost a lock race (SQLite's single writer). */
  lockRetry?: LockRetry;
}

type Row = ApiKeysTable['api_keys'];

/** The ApiKeyStore of every back end; a back end only builds the Kysely instance. */
export class KyselyApiKeyStore implements ApiKeyStore {
  readonly kind: 'sqlite' | 'postgres';
  readonly #tables: OwnTables<ApiKeysTable>;
  readonly #db: Kysely<ApiKeysTable>;

  constructor(options: KyselyApiKeyStoreOptions) {
    this.#tables = new OwnTables(options, { name: 'sightline_api_keys', what: 'API key store', migrations: apiKeyMigrations });
    this.kind = this.#tables.kind;
    this.#db = this.#tables.db;
  }

  waitUntilReady(): Promise<void> {
    return this.#tables.waitUntilReady();
  }

  async create(name: string, roles: readonly Role[]): Promise<CreatedApiKey> {
    if (!KEY_NAME_PATTERN.test(name))
      throw new RangeError(`API key name ${JSON.stringify(name)}: 1–64 characters of A–Z a–z 0–9 . _ - @ :, starting with a letter or digit`);
    const unknown = roles.filter((r) => !(ROLES as readonly string[]).includes(r));
    if (roles.length === 0 || unknown.length > 0)
      throw new RangeError(`API key roles must be one or more of ${ROLES.join(', ')}${unknown.length ? ` (not ${unknown.join(', ')})` : ''}`);
    const sorted = ROLES.filter((r) => roles.includes(r));
    const { id, secret, key } = newKey();
    const createdAt = Date.now();
    await this.#write(async () => {
      try {
        await this.#db
          .insertInto('api_keys')
          .values({ id, name, roles: sorted.join(','), secret_hash: hashSecret(secret), created_at: createdAt, revoked_at: null })
          .execute();
      } catch (err) {
        if (isUniqueViolation(err)) throw new ApiKeyNameTaken(name);
        throw err;
      }
    });
    return { id, name, roles: sorted, created_at: new Date(createdAt), revoked_at: null, key };
  }

  /**
   * No cache, on purpose: one indexed primary-key read per request is cheap
   * (microseconds on SQLite, one round trip on PostgreSQL), and it is what makes
   * a revocation from any process count on the very next request.
   */
  async verify(presentedKey: string): Promise<Identity | undefined> {
    const parts = parseKey(presentedKey);
    if (!parts) return undefined;
    const row = await this.#run(() =>
      this.#db.selectFrom('api_keys').selectAll().where('id', '=', parts.id).where('revoked_at', 'is', null).executeTakeFirst(),
    );
    // The id only finds the row; the secret is what proves the key, compared in constant time.
    if (!row || !secretMatches(parts.secret, row.secret_hash)) return undefined;
    return { name: row.name, via: 'api_key', roles: rolesOf(row.roles), keyId: row.id };
  }

  async activeIds(ids: readonly string[]): Promise<Set<string>> {
    const unique = [...new Set(ids)];
    const active = new Set<string>();
    // Chunks keep every statement under SQLite's and PostgreSQL's parameter limits.
    for (let i = 0; i < unique.length; i += 500) {
      const chunk = unique.slice(i, i + 500);
      const rows = await this.#run(() => this.#db.selectFrom('api_keys').select('id').where('id', 'in', chunk).where('revoked_at', 'is', null).execute());
      for (const row of rows) active.add(row.id);
    }
    return active;
  }

  async revoke(idOrName: string): Promise<ApiKeyInfo | undefined> {
    const revokedAt = Date.now();
    // Each UPDATE … RETURNING is atomic on its own; an id wins over a name that happens to look like one.
    const revokeBy = (column: 'id' | 'name') =>
      this.#db
        .updateTable('api_keys')
        .set({ revoked_at: revokedAt })
        .where(column, '=', idOrName)
        .where('revoked_at', 'is', null)
        .returningAll()
        .executeTakeFirst();
    const row = await this.#write(async () => (await revokeBy('id')) ?? (await revokeBy('name')));
    return row && info(row);
  }

  async list(options: { includeRevoked?: boolean } = {}): Promise<ApiKeyInfo[]> {
    return this.#run(async () => {
      let query = this.#db.selectFrom('api_keys').selectAll().orderBy('created_at').orderBy('id');
      if (!options.includeRevoked) query = query.where('revoked_at', 'is', null);
      return (await query.execute()).map(info);
    });
  }

  close(): Promise<void> {
    return this.#tables.close();
  }

  #run<T>(fn: () => Promise<T>): Promise<T> {
    return this.#tables.read(fn);
  }

  #write<T>(fn: () => Promise<T>): Promise<T> {
    return this.#tables.write(fn);
  }
}

function rolesOf(text: string): Role[] {
  return text.split(',').filter((r): r is Role => (ROLES as readonly string[]).includes(r));
}

function info(row: Row): ApiKeyInfo {
  return {
    id: row.id,
    name: row.name,
    roles: rolesOf(row.roles),
    created_at: new Date(Number(row.created_at)),
    revoked_at: row.revoked_at === null ? null : new Date(Number(row.revoked_at)),
  };
}

/** SQLite's and PostgreSQL's unique-constraint violation. */
function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === '23505';
}
