import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createBackup, ManifestError, restoreBackup, RestoreRefused } from '../backup/index.js';
import { PACKAGE_ROOT, parseCommandOrExit, resolvePaths } from './config-args.js';

const WHERE = `  --data-dir, --store-url, --store-schema, --queue-url, --snapshots-dir, --models-dir, --config:
                            where the results, jobs, images and models are, as for serve`;

export const BACKUP_HELP = `Usage: sightline backup --out FILE [options]

Writes one archive (a tar) of what this site holds, safe while the server runs
and writes:

  manifest.json            format version, store and queue kinds (read first by restore)
  sqlite/queue.db          the job queue (SQLite online backup)
  sqlite/results.db        results, API keys, lines, snapshot index, history, outbox
  postgres/store.sql       instead, for a PostgreSQL store: pg_dump of its schema
                           (postgres/tables/*.jsonl when pg_dump is not installed)
  snapshots/...            the kept result images and latest frames
  models.json              the model repository: models, versions, file checksums
                           (not the weights)
  checksums.json           size and sha256 of every entry

Jobs queued in RabbitMQ (queue_url amqp://) are not in the archive.

Options:
  --out FILE                the archive to write; replaced only once complete (required)
  --json                    print a summary as JSON
${WHERE}
  -h, --help                show this help

Exit status: 0 written, 1 a database or file could not be read or written,
2 bad arguments.
`;

export const RESTORE_HELP = `Usage: sightline restore --in FILE [options]

Restores an archive of "sightline backup" for a server that is not running:
the archive's manifest is checked first, every entry's checksum is verified,
and only then are the files moved into place. The data dir (and a store file
or snapshots dir outside it) must be empty or absent, unless --force. The model
repository is not restored: models that are missing or differ from the backup's
list are reported.

Options:
  --in FILE                 the archive to restore (required)
  --force                   replace the SQLite files and snapshots that are there
  --json                    print a summary as JSON
${WHERE}
  -h, --help                show this help

Exit status: 0 restored, 1 refused (not empty, another store kind, a newer or
damaged archive: nothing was changed) or a file could not be written, 2 bad
arguments.
`;

const err = (text: string) => process.stderr.write(text);

function version(): string {
  return (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

/** `sightline backup --out FILE`. */
export async function runBackup(argv: string[]): Promise<number> {
  const parsed = parseCommandOrExit('backup', BACKUP_HELP, argv, { out: { type: 'string' }, json: { type: 'boolean' } });
  if (typeof parsed === 'number') return parsed;
  const out = parsed.extra.out;
  if (typeof out !== 'string' || out === '') {
    err('sightline backup: --out FILE is required\n\nRun "sightline backup --help" for the options.\n');
    return 2;
  }
  if (parsed.positionals.length > 0) {
    err(`sightline backup: unexpected argument ${parsed.positionals[0]}\n`);
    return 2;
  }
  const { config } = resolvePaths(parsed);
  try {
    const summary = await createBackup({ config, out: resolve(out), sightlineVersion: version(), note: (m) => err(`${m}\n`) });
    if (parsed.extra.json)
      process.stdout.write(`${JSON.stringify({ file: resolve(out), bytes: summary.bytes, manifest: summary.manifest, entries: summary.entries })}\n`);
    else process.stdout.write(`wrote ${resolve(out)}: ${summary.entries.length} entries, ${summary.bytes} bytes\n`);
    return 0;
  } catch (e) {
    err(`sightline backup: ${(e as Error).message}\n`);
    return 1;
  }
}

/** `sightline restore --in FILE [--force]`. */
export async function runRestore(argv: string[]): Promise<number> {
  const parsed = parseCommandOrExit('restore', RESTORE_HELP, argv, { in: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' } });
  if (typeof parsed === 'number') return parsed;
  const input = parsed.extra.in;
  if (typeof input !== 'string' || input === '') {
    err('sightline restore: --in FILE is required\n\nRun "sightline restore --help" for the options.\n');
    return 2;
  }
  if (parsed.positionals.length > 0) {
    err(`sightline restore: unexpected argument ${parsed.positionals[0]}\n`);
    return 2;
  }
  const { config } = resolvePaths(parsed);
  try {
    const summary = await restoreBackup({ config, input: resolve(input), force: parsed.extra.force === true, note: (m) => err(`${m}\n`) });
    for (const difference of summary.modelDifferences) err(`warning: model ${difference}\n`);
    if (parsed.extra.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else process.stdout.write(`restored ${summary.restored.join(', ')} from a backup of ${summary.manifest.created_at}\n`);
    return 0;
  } catch (e) {
    if (e instanceof RestoreRefused || e instanceof ManifestError) {
      err(`sightline restore: ${e.message}\n`);
      return 1;
    }
    err(`sightline restore: ${(e as Error).message}\n`);
    return 1;
  }
}
