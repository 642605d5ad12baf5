// The dependency rules (.dependency-cruiser.cjs, `npm run depcheck`) are only
// worth having if they fail on what they forbid: each case below plants one
// forbidden import in a tiny tree laid out like src/ and runs the real CLI with
// the project's config on it; the last runs it on the real src/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const depcruise = join(root, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');
const config = join(root, '.dependency-cruiser.cjs');

interface Violation {
  rule: string;
  /** The importing module and what it imports; for a cycle, the modules around it. */
  chain: string[];
}

interface Cruise {
  status: number | null;
  violations: Violation[];
  output: string;
}

/** Runs the depcruise CLI with the project's config on `src` under `cwd`, as `npm run depcheck` does. */
function cruise(cwd: string): Cruise {
  const { FORCE_COLOR: _, ...env } = process.env;
  const run = spawnSync(process.execPath, [depcruise, '--config', config, 'src'], {
    cwd,
    env: { ...env, NO_COLOR: '1' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  const output = `${run.stdout}${run.stderr}`;
  // The `err` report: "error RULE: FROM → TO", a cycle's chain wrapped over indented lines.
  const violations = [...output.matchAll(/error ([\w-]+): (.+(?:\n {4,}\S.*)*)/g)].map((m) => ({
    rule: m[1] ?? '',
    chain: (m[2] ?? '')
      .split('→')
      .map((s) => s.trim())
      .filter(Boolean),
  }));
  return { status: run.status, violations, output };
}

/** A clean tree in the real layers: protocol at the bottom, the core on it, the server on top. */
const CLEAN: Record<string, string> = {
  'src/errors.ts': `export const CODE = 'x';\n`,
  'src/protocol/wire.ts': `export interface Frame { id: string }\n`,
  'src/config/schema.ts': `export interface Config { port: number }\n`,
  'src/inference/detector.ts': `import type { Frame } from '../protocol/wire.js';\nimport { CODE } from '../errors.js';\nexport const detect = (f: Frame) => f.id + CODE;\n`,
  'src/store/results.ts': `import { detect } from '../inference/detector.js';\nexport const save = detect;\n`,
  'src/queue/queue.ts': `import type { Config } from '../config/schema.js';\nimport { save } from '../store/results.js';\nexport const enqueue = (c: Config) => save({ id: String(c.port) });\n`,
  'src/client/client.ts': `import type { Frame } from '../protocol/wire.js';\nexport const send = (f: Frame) => f;\n`,
  'src/events/bus.ts': `export interface SightlineEvent { line: string }\n`,
  'src/server/reply.ts': `export interface ErrorReply { code: string }\n`,
  'src/server/app.ts': `import { enqueue } from '../queue/queue.js';\nimport type { SightlineEvent } from '../events/bus.js';\nimport type { ErrorReply } from './reply.js';\nexport type { ErrorReply };\nexport const app = (e: SightlineEvent) => enqueue({ port: e.line.length });\n`,
  'src/cli/main.ts': `import { app } from '../server/app.js';\napp({ line: 'a' });\n`,
};

/** Lays out CLEAN plus `planted` in a temporary directory and cruises it. */
function cruiseTree(planted: Record<string, string>): Cruise {
  const dir = mkdtempSync(join(tmpdir(), 'sightline-deprules-'));
  try {
    copyFileSync(join(root, 'tsconfig.json'), join(dir, 'tsconfig.json'));
    for (const [path, text] of Object.entries({ ...CLEAN, ...planted })) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    return cruise(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The exit status is what fails `npm test`; the report says it failed for the planted import and nothing else. */
function assertOnlyViolation(result: Cruise, rule: string, from: string, to: string): void {
  assert.notEqual(result.status, 0, result.output);
  assert.deepEqual(result.violations, [{ rule, chain: [from, to] }], result.output);
}

test('the fixture tree without a planted import passes (so the failures below come from the plants)', () => {
  const result = cruiseTree({});
  assert.equal(result.status, 0, result.output);
});

test('protocol importing a server module fails', () => {
  const result = cruiseTree({
    'src/protocol/wire.ts': `import type { SightlineEvent } from '../events/bus.js';\nexport interface Frame { id: string; event?: SightlineEvent }\n`,
  });
  assertOnlyViolation(result, 'protocol-imports-only-protocol', 'src/protocol/wire.ts', 'src/events/bus.ts');
});

test('the core importing upward fails, type-only imports included', () => {
  const result = cruiseTree({
    'src/store/results.ts': `import { detect } from '../inference/detector.js';\nimport type { ErrorReply } from '../server/reply.js';\nexport const save = detect;\nexport type Failure = ErrorReply;\n`,
  });
  assertOnlyViolation(result, 'core-imports-upward', 'src/store/results.ts', 'src/server/reply.ts');
});

test('the queue importing the CLI fails', () => {
  const result = cruiseTree({
    'src/queue/worker.ts': `import '../cli/main.js';\n`,
  });
  assertOnlyViolation(result, 'core-imports-upward', 'src/queue/worker.ts', 'src/cli/main.ts');
});

test('a middle layer importing upward fails', () => {
  const result = cruiseTree({
    'src/events/bus.ts': `import type { ErrorReply } from '../server/reply.js';\nexport interface SightlineEvent { line: string; error?: ErrorReply }\n`,
  });
  assertOnlyViolation(result, 'events-imports-upward', 'src/events/bus.ts', 'src/server/reply.ts');
});

test('the client SDK importing a server module fails', () => {
  const result = cruiseTree({
    'src/client/client.ts': `import type { SightlineEvent } from '../events/bus.js';\nexport const send = (e: SightlineEvent) => e;\n`,
  });
  assertOnlyViolation(result, 'client-imports-only-protocol', 'src/client/client.ts', 'src/events/bus.ts');
});

test('an import cycle fails', () => {
  const result = cruiseTree({
    'src/server/routes.ts': `import { app } from './app.js';\nexport const routes = [app];\n`,
    'src/server/app.ts': `import { enqueue } from '../queue/queue.js';\nimport type { SightlineEvent } from '../events/bus.js';\nimport { routes } from './routes.js';\nexport const app = (e: SightlineEvent) => enqueue({ port: e.line.length + routes.length });\n`,
  });
  assert.notEqual(result.status, 0, result.output);
  assert.ok(result.violations.length > 0, result.output);
  for (const { rule, chain } of result.violations) {
    assert.equal(rule, 'no-circular', result.output);
    assert.deepEqual(new Set(chain), new Set(['src/server/app.ts', 'src/server/routes.ts']), result.output);
  }
});

test('a folder missing from the layer map fails', () => {
  const result = cruiseTree({
    'src/misc/util.ts': `import type { Frame } from '../protocol/wire.js';\nexport const id = (f: Frame) => f.id;\n`,
  });
  assertOnlyViolation(result, 'folder-not-in-layer-map', 'src/misc/util.ts', 'src/protocol/wire.ts');
});

test('an import that does not resolve fails (else a rule could pass by not seeing the import)', () => {
  const result = cruiseTree({
    'src/queue/queue.ts': `import { save } from '../store/gone.js';\nexport const enqueue = save;\n`,
  });
  assertOnlyViolation(result, 'not-to-unresolvable', 'src/queue/queue.ts', '../store/gone.js');
});

test('the real src/ passes', () => {
  const result = cruise(root);
  assert.deepEqual(result.violations, [], result.output);
  assert.equal(result.status, 0, result.output);
});
