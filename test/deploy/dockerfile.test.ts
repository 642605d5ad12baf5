// The container image without a container engine: the Dockerfile is read and checked
// (stages, user, health check, init, production install, no secrets, .dockerignore),
// and the final stage's layout is reproduced in a clean folder and started there
// exactly as its ENTRYPOINT, WORKDIR and ENV say: /livez, /readyz, a detection, and
// a SIGTERM that ends with exit code 0.
//
// The production install itself (`npm ci --omit=dev`, as in the final stage) takes
// minutes here, so it runs only with SIGHTLINE_TEST_RUNTIME_INSTALL=1; otherwise the
// clean folder borrows this checkout's node_modules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DOCKERFILE = join(ROOT, 'Dockerfile');
const FULL_INSTALL = process.env.SIGHTLINE_TEST_RUNTIME_INSTALL === '1';

// ---- a small Dockerfile reader: enough for this repository's Dockerfile ----

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  from: string;
  name: string | undefined;
  instructions: Instruction[];
}

function parseDockerfile(text: string): { preamble: Instruction[]; stages: Stage[] } {
  const instructions: Instruction[] = [];
  const lines = text.split('\n');
  let current: Instruction | undefined;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const trimmed = raw.trim();
    if (current === undefined && (trimmed === '' || trimmed.startsWith('#'))) continue;
    // Comment lines inside a continued instruction are dropped by Docker too.
    if (current !== undefined && trimmed.startsWith('#')) continue;
    const continued = trimmed.endsWith('\\');
    const body = continued ? trimmed.slice(0, -1).trim() : trimmed;
    if (current === undefined) {
      const match = /^(\S+)\s*(.*)$/.exec(body);
      if (!match) continue;
      current = { keyword: match[1]!.toUpperCase(), args: match[2]!, line: i + 1 };
    } else if (body !== '') {
      current.args = current.args === '' ? body : `${current.args} ${body}`;
    }
    if (!continued) {
      instructions.push(current);
      current = undefined;
    }
  }
  if (current) instructions.push(current);
  const preamble: Instruction[] = [];
  const stages: Stage[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const match = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args);
      if (!match) throw new Error(`cannot read FROM at line ${instruction.line}: ${instruction.args}`);
      stages.push({ from: match[1]!, name: match[2], instructions: [] });
    } else if (stages.length === 0) {
      preamble.push(instruction);
    } else {
      stages.at(-1)!.instructions.push(instruction);
    }
  }
  return { preamble, stages };
}

/** The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD, or undefined for the shell form. */
function execForm(args: string): string[] | undefined {
  if (!args.trimStart().startsWith('[')) return undefined;
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) throw new Error(`not a JSON string array: ${args}`);
  return parsed as string[];
}

/** ENV in both forms (`ENV A=1 B=2` and `ENV A 1`), quotes removed. */
function envPairs(args: string): [string, string][] {
  if (!args.includes('=') || /^\S+\s+[^=]*$/.test(args)) {
    const match = /^(\S+)\s+(.*)$/.exec(args);
    return match ? [[match[1]!, match[2]!]] : [];
  }
  const pairs: [string, string][] = [];
  const re = /([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)/g;
  for (const m of args.matchAll(re)) pairs.push([m[1]!, m[2]!.replace(/^(["'])(.*)\1$/, '$2')]);
  return pairs;
}

/** COPY's options (`--from=build`, `--chown=…`) and its sources and destination. */
function copyParts(args: string): { options: Record<string, string>; sources: string[]; dest: string } {
  const words = execForm(args) ?? args.split(/\s+/).filter(Boolean);
  const options: Record<string, string> = {};
  while (words[0]?.startsWith('--')) {
    const [name, value = ''] = words.shift()!.slice(2).split('=');
    options[name!] = value;
  }
  const dest = words.pop();
  if (dest === undefined || words.length === 0) throw new Error(`COPY needs a source and a destination: ${args}`);
  return { options, sources: words, dest };
}

// ---- what the tests read ----

const dockerfile = parseDockerfile(readFileSync(DOCKERFILE, 'utf8'));
const args = new Map(dockerfile.preamble.filter((i) => i.keyword === 'ARG').map((i) => envPairs(i.args)[0] ?? [i.args, '']));
const expand = (text: string) => text.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (_, name: string) => args.get(name) ?? '');
const finalStage = dockerfile.stages.at(-1)!;
const buildStages = dockerfile.stages.slice(0, -1);
const all = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);
const last = (stage: Stage, keyword: string) => all(stage, keyword).at(-1);
const finalEnv = new Map(all(finalStage, 'ENV').flatMap((i) => envPairs(i.args)));
const SECRET_NAME = /(SECRET|PASSW|PASSWD|TOKEN|API_?KEY|PRIVATE|CREDENTIAL|AUTH)/i;

test('the image is built in stages: sources and dev dependencies stay in the build stage', () => {
  assert.ok(dockerfile.stages.length >= 2, 'multi-stage: a build stage and a runtime stage');
  for (const stage of dockerfile.stages) assert.equal(expand(stage.from), 'node:20-bookworm-slim', `stage ${stage.name} is node:20-bookworm-slim`);
  const build = buildStages.find((s) => all(s, 'RUN').some((r) => /\bnpm run build\b/.test(r.args)));
  assert.ok(build?.name, 'a named stage runs `npm run build`');
  const install = all(build, 'RUN').find((r) => /\bnpm ci\b/.test(r.args));
  assert.ok(install && !/--omit[= ]dev|--production/.test(install.args), 'the build stage installs the dev dependencies (tsc, vite)');
  const copies = all(finalStage, 'COPY').map((c) => copyParts(c.args));
  const fromBuild = copies.filter((c) => c.options.from === build.name);
  assert.deepEqual(
    fromBuild.map((c) => c.sources).sort(),
    [['/src/dist'], ['/src/native/jpeg-decode/build/Release/jpeg_decode.node']],
    'the runtime takes only dist/ (server and dashboard) and the built native JPEG decoder from the build stage, not its node_modules',
  );
  assert.ok(!copies.some((c) => c.sources.some((s) => /^(\.\/)?(src|web|test)(\/|$)/.test(s))), 'no sources in the runtime stage');
});

test('the native JPEG decoder is compiled in the build stage and only its library and module reach the runtime', () => {
  const build = buildStages.find((s) => all(s, 'RUN').some((r) => /\bnpm run build\b/.test(r.args)))!;
  const buildRuns = all(build, 'RUN').map((r) => r.args);
  assert.ok(
    buildRuns.some((r) => /build-essential/.test(r) && /libjpeg62-turbo-dev/.test(r)),
    'the build stage has a compiler and libjpeg headers',
  );
  assert.ok(
    buildRuns.some((r) => /jpeg_decode\.node/.test(r)),
    'the build stage checks that the module loads',
  );
  const runtimeRuns = all(finalStage, 'RUN').map((r) => r.args);
  assert.ok(
    runtimeRuns.some((r) => /apt-get install[^&]*\blibjpeg62-turbo\b(?!-dev)/.test(r)),
    'the runtime installs libjpeg62-turbo',
  );
  assert.ok(!runtimeRuns.some((r) => /build-essential|libjpeg62-turbo-dev/.test(r)), 'no compiler or headers in the runtime');
  assert.ok(
    runtimeRuns.some((r) => /SIGHTLINE_SKIP_NATIVE=1 npm ci/.test(r)),
    'the runtime install does not try to compile it',
  );
});

test('the runtime stage installs production dependencies only, with the .npmrc that skips the CUDA download', () => {
  const runs = all(finalStage, 'RUN');
  const installs = runs.filter((r) => /\bnpm (ci|install|i)\b/.test(r.args));
  assert.equal(installs.length, 1, 'one npm install in the runtime stage');
  assert.match(installs[0]!.args, /\bnpm ci\b.*--omit=dev/, 'npm ci --omit=dev (lockfile exact, no dev dependencies)');
  assert.match(installs[0]!.args, /npm cache clean --force/, 'the npm cache does not stay in the layer');
  const npmrcCopy = all(finalStage, 'COPY').find((c) => copyParts(c.args).sources.includes('.npmrc'));
  assert.ok(npmrcCopy && npmrcCopy.line < installs[0]!.line, '.npmrc is copied before the install');
  assert.match(readFileSync(join(ROOT, '.npmrc'), 'utf8'), /^onnxruntime-node-install=skip$/m);
  assert.equal(finalEnv.get('NODE_ENV'), 'production');
});

test('the runtime runs as a numeric non-root user, after every step that needs root', () => {
  const user = last(finalStage, 'USER');
  assert.ok(user, 'the final stage sets USER');
  const [uid, gid] = user.args.split(':');
  assert.match(uid!, /^\d+$/, 'numeric uid: runAsNonRoot can verify it');
  assert.notEqual(Number(uid), 0);
  if (gid !== undefined) assert.match(gid, /^\d+$/);
  const laterRuns = all(finalStage, 'RUN').filter((r) => r.line > user.line);
  assert.deepEqual(laterRuns, [], 'nothing runs after USER (it would run as that user, or need root)');
  assert.ok(
    all(finalStage, 'RUN').some((r) => new RegExp(`chown\\s+${uid}(:${gid ?? '\\d+'})?\\s+/data\\b`).test(r.args)),
    '/data belongs to the runtime user, so a fresh volume there is writable',
  );
});

test('data in a volume, listen on every address, ports 8080 (serve) and 9464 (worker), SIGTERM to stop', () => {
  assert.deepEqual(
    all(finalStage, 'VOLUME').map((v) => v.args),
    ['/data'],
  );
  assert.equal(finalEnv.get('SIGHTLINE_DATA_DIR'), '/data');
  assert.equal(finalEnv.get('SIGHTLINE_HOST'), '0.0.0.0');
  assert.deepEqual(
    all(finalStage, 'EXPOSE').map((e) => e.args),
    ['8080 9464'],
  );
  assert.equal(last(finalStage, 'STOPSIGNAL')?.args, 'SIGTERM');
});

test('the health check asks /livez with Node itself (no curl in the image)', async () => {
  const check = last(finalStage, 'HEALTHCHECK');
  assert.ok(check, 'HEALTHCHECK in the final stage');
  const match = /^((?:--\S+\s+)*)CMD\s+(.*)$/.exec(check.args);
  assert.ok(match, `HEALTHCHECK [options] CMD …: ${check.args}`);
  const command = execForm(match[2]!);
  assert.ok(command, 'exec form: no shell needed');
  assert.equal(command[0], 'node');
  assert.match(command.join(' '), /fetch\('http:\/\/127\.0\.0\.1:.*\/livez'\)/);
  assert.match(match[1]!, /--start-period=\d+s/, 'a start period covers model loading');
  // The probe itself (asynchronously: the test's server must keep answering), run
  // against a server that answers /livez and against a closed port.
  const server = createServer((socket) => {
    socket.once('data', (data) => {
      const ok = data.toString().startsWith('GET /livez ');
      socket.end(`HTTP/1.1 ${ok ? '200 OK' : '404 Not Found'}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  // A port nothing listens on (the test's server, once closed) stands for the other role's.
  const run = (servePort: number, workerPort: number) =>
    new Promise<number | null>((resolve) => {
      const env = { ...process.env, SIGHTLINE_PORT: String(servePort), SIGHTLINE_WORKER_HTTP_PORT: String(workerPort) };
      const probe = spawn(process.execPath, command.slice(1), { env, stdio: 'ignore' });
      probe.once('exit', (code) => resolve(code));
    });
  const closed = await new Promise<number>((resolve) => {
    const spare = createServer();
    spare.listen(0, '127.0.0.1', () => {
      const p = (spare.address() as { port: number }).port;
      spare.close(() => resolve(p));
    });
  });
  try {
    assert.equal(await run(port, closed), 0, 'a server (`serve`) is healthy when its /livez answers 200');
    assert.equal(await run(closed, port), 0, 'a worker is healthy when /livez on worker_http_port answers 200');
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
  assert.equal(await run(port, closed), 1, 'unhealthy when nothing answers');
});

test('tini is PID 1 and the entrypoint is the sightline CLI, so `serve` and `worker` are arguments', () => {
  assert.ok(
    all(finalStage, 'RUN').some((r) => /apt-get install\b.*\btini\b/.test(r.args)),
    "Debian's tini is installed in the runtime stage",
  );
  const entrypoint = execForm(last(finalStage, 'ENTRYPOINT')?.args ?? '');
  assert.ok(entrypoint, 'ENTRYPOINT in exec form (a shell would be PID 1 and swallow SIGTERM)');
  assert.deepEqual(entrypoint.slice(0, 3), ['/usr/bin/tini', '--', 'node']);
  assert.match(entrypoint[3]!, /\/dist\/cli\/main\.js$/);
  assert.deepEqual(execForm(last(finalStage, 'CMD')?.args ?? ''), ['serve']);
  const main = readFileSync(join(ROOT, 'src/cli/main.ts'), 'utf8');
  for (const command of ['serve', 'worker']) assert.match(main, new RegExp(`\\b${command}: run`), `the CLI has "${command}"`);
});

test('no secret in ENV or ARG; every SIGHTLINE_* variable is a config key', async () => {
  const { CONFIG_KEYS } = await import('../../src/config/schema.js');
  const everywhere = [...dockerfile.preamble, ...dockerfile.stages.flatMap((s) => s.instructions)];
  const pairs: [string, string][] = everywhere.flatMap((i): [string, string][] =>
    i.keyword === 'ENV' ? envPairs(i.args) : i.keyword === 'ARG' ? [envPairs(i.args)[0] ?? [i.args, '']] : [],
  );
  assert.ok(pairs.length > 0);
  for (const [name, value] of pairs) {
    assert.doesNotMatch(name, SECRET_NAME, `${name} looks like a secret: pass it at run time`);
    assert.doesNotMatch(value, /:\/\/[^/\s:@]+:[^/\s@]+@/, `${name} holds credentials in a URL`);
    if (name.startsWith('SIGHTLINE_')) assert.ok((CONFIG_KEYS as string[]).includes(name.slice(10).toLowerCase()), `${name} is no config key`);
  }
});

test('.dockerignore keeps local state out of the context, and keeps what the Dockerfile copies', () => {
  const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  for (const entry of ['node_modules', '.git', 'data', 'dist', '.env', '.tmp', '*.log']) assert.ok(ignored.includes(entry), `.dockerignore has ${entry}`);
  const contextSources = dockerfile.stages
    .flatMap((s) => all(s, 'COPY'))
    .map((c) => copyParts(c.args))
    .filter((c) => c.options.from === undefined)
    .flatMap((c) => c.sources);
  for (const source of contextSources) {
    const top = source.replace(/^\.\//, '').split('/')[0]!;
    assert.ok(!ignored.includes(top), `${source} is copied but .dockerignore leaves it out`);
    assert.ok(existsSync(join(ROOT, source)), `${source} exists`);
  }
});

// ---- the runtime layout, reproduced ----

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

function listFiles(dir: string, skip: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (path === skip) return [];
    return entry.isDirectory() ? listFiles(path, skip) : [`${relative(dir, path)}:${statSync(path).size}`];
  });
}

async function poll<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test("the runtime stage's files, install and entrypoint start a server that detects and drains on SIGTERM", {
  timeout: FULL_INSTALL ? 600_000 : 150_000,
}, async (t) => {
  // dist/ as `npm run build` makes it: the project's own incremental build (as `npm start`).
  const build = spawnSync(process.execPath, ['scripts/build-if-needed.mjs'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  assert.equal(build.status, 0, `build: ${build.stderr}`);
  assert.ok(existsSync(join(ROOT, 'dist/web/index.html')), 'the build made the dashboard too');

  const tmp = mkdtempSync(join(tmpdir(), 'sightline-image-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const workdir = last(finalStage, 'WORKDIR')?.args;
  assert.ok(workdir, 'the runtime stage has a WORKDIR');
  const app = join(tmp, 'app');
  const data = join(tmp, 'data');
  const buildWorkdirs = new Map(buildStages.map((s) => [s.name, last(s, 'WORKDIR')?.args ?? '/']));
  // Container paths to folders here: WORKDIR and the data volume.
  const local = (path: string) =>
    path.startsWith('/data') ? join(data, path.slice(5)) : path.startsWith(workdir) ? join(app, path.slice(workdir.length)) : join(app, path);

  // Every step of the final stage that puts files in place, in order.
  for (const instruction of finalStage.instructions) {
    if (instruction.keyword === 'COPY') {
      const { options, sources, dest } = copyParts(instruction.args);
      for (const source of sources) {
        // A build stage's WORKDIR is this checkout (that is what it copied in).
        const from = options.from === undefined ? join(ROOT, source) : join(ROOT, relative(buildWorkdirs.get(options.from)!, source));
        assert.ok(existsSync(from), `COPY source ${source} (${from}) exists`);
        const target = dest.endsWith('/') && statSync(from).isFile() ? join(local(dest), source.split('/').at(-1)!) : local(dest);
        cpSync(from, target, { recursive: true });
      }
    } else if (instruction.keyword === 'RUN' && /\bnpm ci\b/.test(instruction.args)) {
      if (FULL_INSTALL) {
        const command = instruction.args.split('&&')[0]!.trim().split(/\s+/);
        const ci = spawnSync('npm', [...command.slice(1), '--prefer-offline'], { cwd: app, encoding: 'utf8', timeout: 540_000 });
        assert.equal(ci.status, 0, `${command.join(' ')}: ${ci.stderr.slice(-2000)}`);
        assert.ok(!existsSync(join(app, 'node_modules/typescript')), 'no dev dependency was installed');
      } else {
        symlinkSync(join(ROOT, 'node_modules'), join(app, 'node_modules'), 'dir');
      }
    }
  }
  for (const path of ['dist/cli/main.js', 'dist/web/index.html', 'models', 'package.json']) assert.ok(existsSync(join(app, path)), `${path} in the image`);
  assert.ok(!existsSync(join(app, 'src')), 'no sources in the image');

  const port = await freePort();
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SIGHTLINE_')));
  for (const [name, value] of finalEnv) env[name] = value.startsWith('/data') ? local(value) : value;
  Object.assign(env, { SIGHTLINE_PORT: String(port), SIGHTLINE_LOG_FORMAT: 'json', SIGHTLINE_LOG_LEVEL: 'warn' });
  const entrypoint = execForm(last(finalStage, 'ENTRYPOINT')!.args)!;
  const [node, ...nodeArgs] = entrypoint.slice(entrypoint.indexOf('--') + 1);
  assert.equal(node, 'node');
  const argv = nodeArgs.map((a) => (a.startsWith('/') ? local(a) : a));

  const help = spawnSync(process.execPath, [...argv, 'worker', '--help'], { cwd: app, env, encoding: 'utf8', timeout: 30_000 });
  assert.equal(help.status, 0, `worker --help: ${help.stderr}`);
  assert.match(help.stdout, /Usage: sightline worker/);

  const before = listFiles(app, join(app, 'node_modules'));
  const cmd = execForm(last(finalStage, 'CMD')!.args)!;
  const child = spawn(process.execPath, [...argv, ...cmd], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  t.after(() => child.kill('SIGKILL'));
  const base = `http://127.0.0.1:${port}`;
  try {
    await poll('/livez 200', 60_000, async () => ((await fetch(`${base}/livez`)).status === 200 ? true : undefined));
    await poll('/readyz 200', 60_000, async () => ((await fetch(`${base}/readyz`)).status === 200 ? true : undefined));
    const res = await fetch(`${base}/v1/detect?line=image-test`, {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg' },
      body: readFileSync(join(ROOT, 'samples/ok-01.jpg')),
    });
    const body = (await res.json()) as { verdict?: string; model?: { name: string } };
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.verdict, 'ok');
    assert.equal(body.model?.name, 'defects', 'the built-in model, from ./models under WORKDIR');
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- server output ---\n${output.slice(-3000)}`);
  }
  child.kill('SIGTERM');
  const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running 20 s after SIGTERM'), 20_000))]);
  assert.equal(code, 0, `exit after SIGTERM\n${output.slice(-3000)}`);
  assert.ok(existsSync(join(data, 'results.db')), 'results went to SIGHTLINE_DATA_DIR (the volume)');
  assert.deepEqual(listFiles(app, join(app, 'node_modules')), before, 'nothing written outside the data volume: a read-only root filesystem works');
});
