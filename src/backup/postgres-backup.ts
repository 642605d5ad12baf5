import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import pg from 'pg';

export interface PostgresPart {
  /** A file under the work folder. */
  file: string;
  role: 'pg_dump' | 'pg_table';
  table?: string;
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} exited with ${code}: ${stderr.trim().slice(-500)}`))));
  });
}

/** Whether `command --version` runs: pg_dump and psql are optional system packages. */
export function installed(command: string): boolean {
  return spawnSync(command, ['--version'], { stdio: 'ignore' }).status === 0;
}

const ident = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** Every table of `schema` as JSON lines, read in pages (a big table is never held whole). */
async function exportTables(url: string, schema: string, dir: string): Promise<PostgresPart[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    // One snapshot for all tables: rows written meanwhile are in all of them or none.
    await client.query('begin isolation level repeatable read read only');
    const tables = await client.query<{ table_name: string }>(
      "select table_name from information_schema.tables where table_schema = $1 and table_type = 'BASE TABLE' order by table_name",
      [schema],
    );
    const parts: PostgresPart[] = [];
    for (const { table_name: table } of tables.rows) {
      const file = join(dir, `${table}.jsonl`);
      const out = createWriteStream(file);
      const cursor = `export_${parts.length}`;
      await client.query(`declare ${cursor} no scroll cursor for select * from ${ident(schema)}.${ident(table)}`);
      for (;;) {
        const page = await client.query(`fetch 1000 from ${cursor}`);
        for (const row of page.rows) if (!out.write(`${JSON.stringify(row)}\n`)) await once(out, 'drain');
        if (page.rows.length < 1000) break;
      }
      await client.query(`close ${cursor}`);
      out.end();
      await once(out, 'finish');
      parts.push({ file, role: 'pg_table', table });
    }
    await client.query('commit');
    return parts;
  } finally {
    await client.end();
  }
}

/**
 * The PostgreSQL store's schema: a plain-SQL `pg_dump` (restorable with psql)
 * where pg_dump is installed and can dump this server, else every table as JSON
 * lines in one consistent snapshot. `onFallback` says why pg_dump was not used.
 */
export async function backupPostgres(url: string, schema: string, dir: string, onFallback: (why: string) => void): Promise<PostgresPart[]> {
  if (installed('pg_dump')) {
    const file = join(dir, 'store.sql');
    try {
      await run('pg_dump', ['--dbname', url, '--schema', schema, '--no-owner', '--no-privileges', '--format', 'plain', '--file', file]);
      return [{ file, role: 'pg_dump' }];
    } catch (err) {
      // The usual cause: a pg_dump older than the server.
      onFallback(`pg_dump failed (${(err as Error).message}); exporting the tables as JSON instead`);
    }
  } else {
    onFallback('pg_dump is not installed; exporting the tables as JSON instead');
  }
  return exportTables(url, schema, dir);
}

/** Whether `schema` holds any table (a restore goes into an empty one). */
export async function schemaHasTables(url: string, schema: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const r = await client.query("select 1 from information_schema.tables where table_schema = $1 and table_type = 'BASE TABLE' limit 1", [schema]);
    return (r.rowCount ?? 0) > 0;
  } finally {
    await client.end();
  }
}

/**
 * Loads a plain-SQL dump of `schema` with psql, all or nothing. The dump creates
 * the schema itself, so the empty one there is dropped first (without CASCADE:
 * anything in it, a view or a function, stops the restore instead of being lost).
 */
export async function restorePgDump(url: string, schema: string, file: string): Promise<void> {
  if (!installed('psql')) throw new Error('restoring a pg_dump needs psql (the PostgreSQL client), which is not installed');
  await run('psql', [
    ...['--dbname', url, '--quiet', '--no-psqlrc', '-v', 'ON_ERROR_STOP=1', '--single-transaction'],
    ...['--command', `drop schema if exists ${ident(schema)}`, '--file', file],
  ]);
}
