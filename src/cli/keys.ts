import { ApiKeyNameTaken, createApiKeyStore, ROLES, type ApiKeyInfo, type ApiKeyStore, type Role } from '../auth/index.js';
import { storeUrl } from '../config/locations.js';
import { parseCommandOrExit } from './config-args.js';

export const KEYS_HELP = `Usage: sightline keys <command> [options]

Manages the API keys that clients send as "Authorization: Bearer <key>" or
"X-API-Key: <key>". Keys live, hashed, in the result store's database, so every
server and worker that shares it sees a change on its next request.

Commands:
  create --name NAME --role ROLE[,ROLE]   make a key; prints it once (only its hash is kept)
  revoke NAME|ID                          revoke an active key, at once
  list [--json] [--all]                   active keys (--all: revoked ones too)

Roles: ingest (send images: detect, jobs, uploads, stream frames), viewer (read
results, jobs, models, alerts, metrics; subscribe on the stream), reviewer (what
viewer does, and review results), admin (everything).

Options:
  --name NAME                name of the new key: 1–64 characters of A–Z a–z 0–9 . _ - @ :
  --role ROLE[,ROLE]         roles of the new key (repeatable)
  --json                     machine-readable output
  --all                      list: revoked keys too
  --store-url URL            the result store the server uses [env SIGHTLINE_STORE_URL]
  --data-dir DIR             where the default SQLite store is [env SIGHTLINE_DATA_DIR]
  --store-schema NAME        PostgreSQL schema [env SIGHTLINE_STORE_SCHEMA]
  --config FILE              JSON config file [env SIGHTLINE_CONFIG]
  -h, --help                 show this help

Exit status: 0 done, 1 nothing to revoke or a name already taken, 2 bad arguments.
`;

const OPTIONS = {
  name: { type: 'string' },
  role: { type: 'string', multiple: true },
  json: { type: 'boolean' },
  all: { type: 'boolean' },
} as const;

const out = (text: string) => process.stdout.write(text);
const err = (text: string) => process.stderr.write(text);

function usage(message: string): number {
  err(`sightline keys: ${message}\n\nRun "sightline keys --help" for the commands.\n`);
  return 2;
}

function parseRoles(values: string[]): Role[] | string {
  const names = values
    .flatMap((v) => v.split(','))
    .map((r) => r.trim())
    .filter(Boolean);
  const unknown = names.filter((r) => !(ROLES as readonly string[]).includes(r));
  if (names.length === 0) return `--role is required: one or more of ${ROLES.join(', ')}`;
  if (unknown.length > 0) return `unknown role ${unknown.map((r) => JSON.stringify(r)).join(', ')}: use ${ROLES.join(', ')}`;
  return ROLES.filter((r) => names.includes(r));
}

const json = (k: ApiKeyInfo) => ({ ...k, created_at: k.created_at.toISOString(), revoked_at: k.revoked_at?.toISOString() ?? null });

function table(keys: ApiKeyInfo[], all: boolean): string {
  if (keys.length === 0) return all ? 'no API keys\n' : 'no active API keys\n';
  const rows = [['ID', 'NAME', 'ROLES', 'CREATED', ...(all ? ['REVOKED'] : [])]];
  for (const k of keys) rows.push([k.id, k.name, k.roles.join(','), k.created_at.toISOString(), ...(all ? [k.revoked_at?.toISOString() ?? '-'] : [])]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

async function run(store: ApiKeyStore, command: string, positionals: string[], extra: Record<string, unknown>): Promise<number> {
  switch (command) {
    case 'create': {
      const name = extra.name;
      if (typeof name !== 'string' || name === '') return usage('create needs --name NAME');
      const roles = parseRoles((extra.role as string[] | undefined) ?? []);
      if (typeof roles === 'string') return usage(roles);
      if (positionals.length > 0) return usage(`create takes no arguments (got ${positionals.join(' ')})`);
      let created;
      try {
        created = await store.create(name, roles);
      } catch (e) {
        if (e instanceof ApiKeyNameTaken) {
          err(`sightline keys: ${e.message}\n`);
          return 1;
        }
        if (e instanceof RangeError) return usage(e.message);
        throw e;
      }
      // The key alone on stdout (KEY=$(sightline keys create …) works); the rest on stderr.
      if (extra.json) out(`${JSON.stringify({ ...json(created), key: created.key })}\n`);
      else out(`${created.key}\n`);
      err(
        `Created API key "${created.name}" (id ${created.id}, roles ${created.roles.join(',')}).\n` +
          'Store it now: it is not shown again (only a hash of it is kept). Revoke it with: sightline keys revoke ' +
          `${created.name}\n`,
      );
      return 0;
    }
    case 'revoke': {
      if (positionals.length !== 1) return usage('revoke needs one NAME or ID');
      const revoked = await store.revoke(positionals[0]!);
      if (!revoked) {
        err(`sightline keys: no active API key with id or name ${JSON.stringify(positionals[0])}\n`);
        return 1;
      }
      if (extra.json) out(`${JSON.stringify(json(revoked))}\n`);
      else out(`revoked API key "${revoked.name}" (id ${revoked.id}); it is refused from the next request on\n`);
      return 0;
    }
    case 'list': {
      if (positionals.length > 0) return usage(`list takes no arguments (got ${positionals.join(' ')})`);
      const all = extra.all === true;
      const keys = await store.list({ includeRevoked: all });
      out(extra.json ? `${JSON.stringify(keys.map(json))}\n` : table(keys, all));
      return 0;
    }
    default:
      return usage(`unknown keys command "${command}" (create, revoke, list)`);
  }
}

/** `sightline keys create|revoke|list`: API keys in the result store's database. */
export async function runKeys(argv: string[]): Promise<number> {
  const parsed = parseCommandOrExit('keys', KEYS_HELP, argv, OPTIONS);
  if (typeof parsed === 'number') return parsed;
  const [command, ...positionals] = parsed.positionals;
  if (!command) {
    out(KEYS_HELP);
    return 2;
  }
  const { config } = parsed;
  const store = createApiKeyStore(storeUrl(config), config.store_schema ? { schema: config.store_schema } : {});
  try {
    return await run(store, command, positionals, parsed.extra);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === 'STORE_UNAVAILABLE') {
      err(`sightline keys: ${(e as Error).message}\n`);
      return 1;
    }
    throw e;
  } finally {
    await store.close();
  }
}
