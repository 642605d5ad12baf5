// Real `sightline` processes for tests that kill, cut and restart them, and
// what those tests share: polling with a bound, LIFO cleanups, the broker lock.
import type { TestContext } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { connect as amqpConnect } from 'amqplib';
import pg from 'pg';
import { deleteAmqpTopology } from '../../src/queue/index.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = ['--import', 'tsx', join(ROOT, 'src/cli/main.ts')];
export const AMQP_URL = process.env.SIGHTLINE_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const PG_URL = process.env.SIGHTLINE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** `queue_url` has no setting for the amqp prefix: the processes use the default `sightline.*` names. */
export const DEFAULT_PREFIX = 'sightline';
export const BROKER_LOCK = 'sightline-tests.default-prefix-lock';

export type Log = Record<string, unknown>;

/** Polls `check` every 100 ms until it returns a truthy value; fails after `timeoutMs` saying what it waited for. */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  what: string | (() => string),
  timeoutMs: number,
): Promise<Exclude<T, false | null | undefined | 0 | ''>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as Exclude<T, false | null | undefined | 0 | ''>;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A `sightline` child process whose JSON log lines are kept for assertions. */
export class SightlineProcess {
  readonly child: ChildProcess;
  readonly events: Log[] = [];
  readonly exited: Promise<void>;
  exitStatus: string | undefined;
  private readonly text: string[] = [];

  constructor(
    readonly name: string,
    args: string[],
  ) {
    // Only flags configure it: a SIGHTLINE_* variable of the test run (SIGHTLINE_TEST_*) is no config key.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SIGHTLINE_')));
    // Tests run several workers at once: each takes a free port for its /livez, /readyz and /metrics unless the test names one.
    const flags = args[0] === 'worker' && !args.some((a) => a.startsWith('--worker-http-port')) ? ['--worker-http-port', '0'] : [];
    this.child = spawn(process.execPath, [...CLI, ...args, ...flags], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as Log);
      } catch {
        this.keep(line);
      }
    });
    createInterface({ input: this.child.stderr! }).on('line', (line) => this.keep(line));
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        this.exitStatus = signal ?? `code ${code}`;
        resolve();
      }),
    );
  }

  private keep(line: string): void {
    this.text.push(line);
    if (this.text.length > 50) this.text.shift();
  }

  get alive(): boolean {
    return this.exitStatus === undefined;
  }

  /** The last log lines, for failure messages. */
  tail(): string {
    const events = this.events.slice(-15).map((e) => JSON.stringify(e).slice(0, 400));
    return `--- ${this.name} (${this.exitStatus ?? 'running'}) ---\n${[...events, ...this.text.slice(-15)].join('\n')}`;
  }

  async waitEvent(what: string, match: (e: Log) => boolean, timeoutMs: number): Promise<Log> {
    return waitFor(
      () => {
        const found = this.events.find(match);
        if (found) return found;
        if (!this.alive) throw new Error(`${this.name} exited (${this.exitStatus}) before ${what}\n${this.tail()}`);
        return undefined;
      },
      () => `${this.name}: ${what}\n${this.tail()}`,
      timeoutMs,
    );
  }

  async baseUrl(timeoutMs = 60_000): Promise<string> {
    const listening = await this.waitEvent('server_listening', (e) => e.event === 'server_listening', timeoutMs);
    const port = (listening.address as { port: number }[])[0]!.port;
    return `http://127.0.0.1:${port}`;
  }

  /** Counts job_done log lines by job id. */
  jobsDone(): Map<string, number> {
    const done = new Map<string, number>();
    for (const e of this.events) if (e.event === 'job_done') done.set(String(e.job_id), (done.get(String(e.job_id)) ?? 0) + 1);
    return done;
  }

  async kill(): Promise<void> {
    if (this.alive) this.child.kill('SIGKILL');
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, 10_000).unref())]);
  }
}

/**
 * Cleanups run last-in first-out after the test, each even when another fails
 * (node:test runs `t.after` hooks first-in first-out): processes die before the
 * database and the queues they use are dropped.
 */
export function cleanups(t: TestContext): (fn: () => unknown) => void {
  const stack: (() => unknown)[] = [];
  t.after(async () => {
    const errors: unknown[] = [];
    for (const fn of stack.reverse()) {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw errors[0];
  });
  return (fn) => stack.push(fn);
}

/**
 * The processes use the default amqp prefix, so two runs on one broker would
 * delete each other's queues: an exclusive queue serialises them (the broker
 * drops it with the connection, even if this process dies).
 */
export async function lockBroker(url: string, timeoutMs = 120_000): Promise<() => Promise<void>> {
  const conn = await amqpConnect(url);
  conn.on('error', () => {});
  const release = async () => {
    await conn.close().catch(() => {});
  };
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    try {
      await ch.assertQueue(BROKER_LOCK, { exclusive: true });
      return release;
    } catch {
      if (Date.now() > until) {
        await release();
        throw new Error(`another test run holds the broker lock ${BROKER_LOCK} (uses the default amqp prefix)`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

type Defer = (fn: () => unknown) => void;

/** Holds the broker lock and empties the default-prefix topology now and at cleanup. */
export async function isolateBroker(defer: Defer): Promise<void> {
  defer(await lockBroker(AMQP_URL));
  await deleteAmqpTopology(AMQP_URL, DEFAULT_PREFIX);
  defer(() => deleteAmqpTopology(AMQP_URL, DEFAULT_PREFIX));
}

/** A PostgreSQL database of the test's own, dropped at cleanup, with a small pool on it. */
export async function freshDatabase(defer: Defer, prefix: string): Promise<{ url: string; pool: pg.Pool }> {
  const dbName = `${prefix}_${randomUUID().replaceAll('-', '')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  admin.on('error', () => {});
  await admin.connect();
  defer(() => admin.end());
  await admin.query(`create database ${dbName}`);
  defer(() => admin.query(`drop database if exists ${dbName} with (force)`));
  const dbUrl = new URL(PG_URL);
  dbUrl.pathname = `/${dbName}`;
  const pool = new pg.Pool({ connectionString: dbUrl.href, max: 2 });
  pool.on('error', () => {});
  defer(() => pool.end());
  return { url: dbUrl.href, pool };
}
