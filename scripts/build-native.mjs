// Builds the native JPEG decoder (native/jpeg-decode) with node-gyp: run by
// `npm install` / `npm ci` (the package's install script) and by `npm run
// build:native`. It needs a C compiler, make, python3 and libjpeg's headers
// (Debian: build-essential libjpeg62-turbo-dev). Where they are missing the build
// is skipped with a warning and never fails the install: sharp then decodes every
// image, as before (docs/batching.md#decoding). A built decoder newer than its
// sources is kept: a second install does not compile it again.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'native', 'jpeg-decode');
const addon = join(dir, 'build', 'Release', 'jpeg_decode.node');
const sources = ['binding.gyp', 'jpeg_decode.c'].map((f) => join(dir, f));
const force = process.argv.includes('--force');

function loads() {
  try {
    createRequire(import.meta.url)(addon);
    return true;
  } catch {
    return false;
  }
}

if (process.env.SIGHTLINE_SKIP_NATIVE === '1') {
  console.error('sightline: SIGHTLINE_SKIP_NATIVE=1, native JPEG decoder not built (sharp decodes every image)');
  process.exit(0);
}
const fresh = existsSync(addon) && sources.every((s) => statSync(s).mtimeMs <= statSync(addon).mtimeMs);
if (!force && fresh && loads()) process.exit(0);

// npm hands its own node-gyp to install scripts (npm_config_node_gyp); run by hand,
// the one bundled with npm next to this node.
const nodeGyp = [
  process.env.npm_config_node_gyp,
  join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
].find((p) => p && existsSync(p));
const fail = (why) => {
  console.error(
    `sightline: native JPEG decoder not built (${why}); sharp decodes every image. Needs a C compiler, make, python3 and libjpeg headers (Debian: build-essential libjpeg62-turbo-dev), then npm run build:native.`,
  );
  process.exit(0);
};
if (!nodeGyp) fail('node-gyp not found');
const result = spawnSync(process.execPath, [nodeGyp, 'rebuild', '--directory', dir], { encoding: 'utf8' });
if (result.status !== 0)
  fail(
    `node-gyp: ${
      `${result.stderr}${result.stdout}`
        .split('\n')
        .filter((l) => /error|not found|No such/i.test(l))
        .slice(0, 3)
        .join(' | ') || `exit ${result.status}`
    }`,
  );
if (!loads()) fail('the built module does not load');
console.error('sightline: native JPEG decoder built (native/jpeg-decode)');
