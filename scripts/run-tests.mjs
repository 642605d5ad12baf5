// Node 20's `--test` does not expand globs, and its default patterns skip .ts
// files, so collect test/**/*.test.ts here and hand them to the built-in runner.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

function collect(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return collect(path);
    return entry.name.endsWith('.test.ts') ? [path] : [];
  });
}

const filters = process.argv.slice(2);
const files = collect('test')
  .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
  .sort();
// --test-force-exit: a test file whose tests have ended exits even if something it
// started still holds the event loop (a failed test's leftover timer once kept CI
// waiting until its 90-minute limit). --test-timeout bounds each file as a whole
// (Node 20 applies it to the file's process too): a hung file fails after 15 minutes,
// far above the slowest file's few minutes.
const FILE_TIMEOUT_MS = 15 * 60_000;
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-force-exit', `--test-timeout=${FILE_TIMEOUT_MS}`, '--test-reporter=spec', ...files],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
