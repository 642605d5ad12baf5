// `npm start` builds only when dist/ is missing or older than a source file, so
// the first start after `npm install` works and later starts are instant.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const mtime = entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs;
    if (mtime > newest) newest = mtime;
  }
  return newest;
}

const entry = 'dist/cli/main.js';
if (!existsSync(entry) || statSync(entry).mtimeMs < newestMtime('src')) {
  console.error('sightline: building (dist/ is missing or stale)…');
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
}
