// The dashboard's initial load stays within its budget (300 KB gzipped) and names
// nothing outside the server. No browser needed: the built files are read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { WEB_DIST, ensureWebBuilt } from './helpers/browser.js';

const BUDGET = 300 * 1024;

test('the initial load (the page, its scripts, styles and preloads) is at most 300 KB gzipped and comes from the server', { timeout: 240_000 }, (t) => {
  ensureWebBuilt();
  const html = readFileSync(join(WEB_DIST, 'index.html'), 'utf8');
  const refs = [...html.matchAll(/\b(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
  const outside = refs.filter((r) => !r.startsWith('./') && !r.startsWith('data:'));
  assert.deepEqual(outside, [], 'index.html loads nothing from another origin (and uses relative paths)');
  const files = refs.filter((r) => r.startsWith('./assets/'));
  assert.ok(
    files.some((f) => f.endsWith('.js')),
    'index.html loads the app',
  );
  let total = gzipSync(html).length;
  for (const file of files) {
    const size = gzipSync(readFileSync(join(WEB_DIST, file))).length;
    t.diagnostic(`${file}: ${(size / 1024).toFixed(1)} KB gzipped`);
    total += size;
  }
  t.diagnostic(`initial load: ${(total / 1024).toFixed(1)} KB gzipped (budget ${BUDGET / 1024} KB)`);
  assert.ok(total <= BUDGET, `the initial load is ${(total / 1024).toFixed(1)} KB gzipped`);
});
