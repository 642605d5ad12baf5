import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './helpers/cli-process.js';
import { tempDir } from './helpers/fixtures.js';

/**
 * buildApp started the runtime (model threads, job runner, timers) and then a plugin
 * refused the config: nothing held the app to close it, so the process never exited
 * (found as a hanging test file). The child below does not call process.exit: it must
 * end by itself once buildApp has refused.
 */
test('buildApp that refuses its config after the runtime started leaves nothing running: the process exits by itself', async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const script = `
    import { loadConfig } from './src/config/load.ts';
    import { buildApp } from './src/server/app.ts';
    const config = loadConfig({ file: { models_dir: 'models', data_dir: ${JSON.stringify(join(tmp.dir, 'data'))}, auth: 'on', auth_jwt_public_key_file: ${JSON.stringify(join(tmp.dir, 'missing.pem'))}, log_level: 'silent' } });
    buildApp(config).then(() => console.log('built'), (err) => console.log('refused: ' + err.message));
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const code = await new Promise<number | null | 'hung'>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('hung');
    }, 30_000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  assert.match(out, /refused: .*missing\.pem/);
  assert.equal(code, 0, `the process ${code === 'hung' ? 'was still running 30 s after buildApp refused' : `exited ${code}`}: ${out.slice(0, 500)}`);
});
