import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, envName, flagName, loadConfig } from '../src/config/load.js';
import { ConfigSchema, CONFIG_KEYS } from '../src/config/schema.js';
import { parseCommand } from '../src/cli/config-args.js';
import { ERROR_CODES, Errors } from '../src/errors.js';
import { tempDir } from './helpers/fixtures.js';

test('defaults come from the schema', () => {
  const config = loadConfig({});
  assert.equal(config.port, 8080);
  assert.equal(config.host, '0.0.0.0');
  assert.equal(config.models_dir, './models');
  assert.equal(config.log_level, 'info');
});

test('precedence: defaults < file < environment < flags, with strings converted', () => {
  const config = loadConfig({
    file: { port: 1000, host: '127.0.0.1', warmup_runs: 3 },
    env: { SIGHTLINE_PORT: '2000', SIGHTLINE_WARMUP_RUNS: '4', PATH: '/bin' },
    flags: { port: '3000' },
  });
  assert.equal(config.port, 3000);
  assert.equal(config.warmup_runs, 4);
  assert.equal(config.host, '127.0.0.1');
});

test('a bad value stops the start with a message naming the key', () => {
  assert.throws(
    () => loadConfig({ env: { SIGHTLINE_PORT: 'eighty' } }),
    (err: Error) => err instanceof ConfigError && /"port"/.test(err.message),
  );
  assert.throws(() => loadConfig({ flags: { log_level: 'loud' } }), /"log_level"/);
  assert.throws(() => loadConfig({ file: { max_image_pixels: -5 } }), /"max_image_pixels"/);
});

test('an unknown key stops the start with a message naming it', () => {
  assert.throws(() => loadConfig({ env: { SIGHTLINE_MODLES_DIR: './x' } }), /SIGHTLINE_MODLES_DIR/);
  assert.throws(() => loadConfig({ file: { portt: 1 } }), /"portt" in config file/);
  // Variables that are not config keys but belong to Sightline are allowed.
  assert.doesNotThrow(() => loadConfig({ env: { SIGHTLINE_REQUIRE_SERVICES: '1', SIGHTLINE_CONFIG: 'x.json', SIGHTLINE_TEST_POSTGRES_URL: 'postgres://x' } }));
});

test("the clients' SIGHTLINE_URL and SIGHTLINE_API_KEY in the same shell do not stop the server from starting", () => {
  assert.doesNotThrow(() => loadConfig({ env: { SIGHTLINE_URL: 'http://127.0.0.1:8080', SIGHTLINE_API_KEY: 'sl_x_y' } }));
});

test('CLI flags and --config file', () => {
  const tmp = tempDir();
  try {
    const file = join(tmp.dir, 'sightline.json');
    writeFileSync(file, JSON.stringify({ port: 9000, models_dir: '/srv/models' }));
    const parsed = parseCommand(['--config', file, '--port', '9100', '--max-image-pixels', '1000'], {}, {});
    assert.equal(parsed.config.port, 9100);
    assert.equal(parsed.config.models_dir, '/srv/models');
    assert.equal(parsed.config.max_image_pixels, 1000);
    assert.throws(() => parseCommand(['--no-such-flag'], {}, {}), /no-such-flag/);
    writeFileSync(file, '{ not json');
    assert.throws(() => parseCommand(['--config', file], {}, {}), /not valid JSON/);
  } finally {
    tmp.cleanup();
  }
});

test('docs/configuration.md documents every config key with its environment variable, flag, default and description', () => {
  const rows = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8').split('\n');
  for (const key of CONFIG_KEYS) {
    const prop = ConfigSchema.properties[key] as { default: unknown; description?: string };
    const shown = prop.default === '' ? '(empty)' : String(prop.default);
    const row = rows.find((l) => l.startsWith(`| \`${key}\` |`));
    assert.ok(row, `docs/configuration.md has no table row for ${key}`);
    assert.ok(row.includes(`| \`${envName(key)}\` |`), `docs/configuration.md row of ${key} lacks ${envName(key)}`);
    assert.ok(row.includes(`| \`${flagName(key)}\` |`), `docs/configuration.md row of ${key} lacks ${flagName(key)}`);
    assert.ok(row.includes(`| \`${shown}\` |`), `docs/configuration.md row of ${key} lacks its default ${shown}`);
    assert.ok(
      row.includes((prop.description ?? '').replace(/\|/g, '\\|')),
      `docs/configuration.md row of ${key} lacks its description (run sh scripts/splice-config-table.sh)`,
    );
  }
});

test('docs/errors.md lists every error code with its HTTP status', () => {
  const rows = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8').split('\n');
  for (const code of ERROR_CODES) {
    const row = rows.find((l) => l.includes(`| \`${code}\` |`));
    assert.ok(row, `docs/errors.md has no table row for ${code}`);
    const status = new (Errors[code] as unknown as new () => { statusCode: number })().statusCode;
    assert.ok(row.startsWith(`| ${status} |`), `docs/errors.md gives ${code} another status than ${status}: ${row}`);
  }
});
