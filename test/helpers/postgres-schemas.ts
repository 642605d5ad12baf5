import { after, before } from 'node:test';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { probeTcp } from '../queue/helpers.js';

export const POSTGRES_URL = process.env.SIGHTLINE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const POSTGRES_WHAT = `PostgreSQL at ${new URL(POSTGRES_URL).host}`;

/**
 * Schemas of one test file's own on the test database: probes PostgreSQL once
 * (before), hands out fresh schema names sharing a run prefix, and drops every
 * schema with that prefix at the end (after), whatever a test left behind.
 */
export function postgresSchemas(prefix: string) {
  const run = `${prefix}_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const state = { available: false, admin: undefined as pg.Pool | undefined, counter: 0 };
  before(async () => {
    const { hostname, port } = new URL(POSTGRES_URL);
    state.available = await probeTcp(hostname, Number(port || 5432), 1000);
    if (state.available) state.admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  });
  after(async () => {
    const admin = state.admin;
    if (!admin) return;
    const { rows } = await admin.query<{ nspname: string }>('select nspname from pg_namespace where nspname like $1', [`${run}%`]);
    for (const { nspname } of rows) await admin.query(`drop schema "${nspname}" cascade`);
    await admin.end();
  });
  return {
    /** Whether PostgreSQL answered (known once the file's `before` ran). */
    get available(): boolean {
      return state.available;
    },
    /** A pool on the test database for assertions and cleanup; set when available. */
    get admin(): pg.Pool {
      if (!state.admin) throw new Error('PostgreSQL is not available');
      return state.admin;
    },
    /** A schema name of this run: `<run>_<suffix>`, or numbered when no suffix is given. */
    schema(suffix?: string): string {
      return `${run}_${suffix ?? ++state.counter}`;
    },
  };
}
