// `npm start` builds only what is missing or older than its sources, so the first
// start after `npm install` works and later starts are instant: the server (src/ →
// dist/, tsc) and the dashboard (web/ → dist/web/, vite).
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

const stale = (output, ...sources) =>
  !existsSync(output) || statSync(output).mtimeMs < Math.max(...sources.map((s) => (statSync(s).isDirectory() ? newestMtime(s) : statSync(s).mtimeMs)));

const entry = 'dist/cli/main.js';
if (stale(entry, 'src')) {
  console.error('sightline: building the server (dist/ is missing or stale)…');
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
}

const page = 'dist/web/index.html';
if (existsSync('web/src') && existsSync('node_modules/vite/bin/vite.js') && stale(page, 'web/src', 'web/index.html', 'web/vite.config.ts')) {
  console.error('sightline: building the dashboard (dist/web/ is missing or stale)…');
  execFileSync(process.execPath, ['node_modules/vite/bin/vite.js', 'build', '-c', 'web/vite.config.ts', '--logLevel', 'warn'], { stdio: 'inherit' });
}
