// Debian's Chromium driven by playwright-core, for the dashboard tests: a page
// that records console errors, page errors and every request it makes, and
// axe-core run inside it.
import { after, type TestContext } from 'node:test';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser, type BrowserContext, type ConsoleMessage, type Locator, type Page } from 'playwright-core';
import type { Config } from '../../src/config/schema.js';
import { ROOT } from './cli-process.js';
import { startApp, tempDir } from './fixtures.js';
import { requireOrSkip } from './requirements.js';

export const CHROMIUM = process.env.SIGHTLINE_TEST_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
export const AXE_PATH = join(ROOT, 'node_modules', 'axe-core', 'axe.min.js');
export const VIEWPORT = { width: 1280, height: 800 };

/** Where `npm run build:web` writes the dashboard (src/server/web.ts serves it). */
export const WEB_DIST = join(ROOT, 'dist', 'web');
const WEB_SOURCES = [join(ROOT, 'web', 'src'), join(ROOT, 'web', 'index.html'), join(ROOT, 'web', 'vite.config.ts')];

function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs;
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, entry)));
  return newest;
}

/**
 * Builds the dashboard (vite, as `npm run build:web` does) when dist/web is
 * missing or older than web/: the server lists dist/web when it starts, so call
 * this before starting one.
 */
export function ensureWebBuilt(): void {
  const index = join(WEB_DIST, 'index.html');
  const sources = Math.max(...WEB_SOURCES.filter((p) => existsSync(p)).map(newestMtime));
  if (existsSync(index) && statSync(index).mtimeMs >= sources) return;
  execFileSync(process.execPath, [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', '-c', 'web/vite.config.ts', '--logLevel', 'warn'], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
    timeout: 180_000,
  });
}

/**
 * One Chromium for the tests of a file, launched by the first test that asks
 * (skipped locally, failing in CI, when /usr/bin/chromium is missing) after the
 * dashboard is built, and closed when the file's tests are done.
 */
export function browserPerFile(): (t: TestContext) => Promise<Browser | undefined> {
  let launched: Promise<Browser> | undefined;
  after(async () => {
    if (launched) await (await launched.catch(() => undefined))?.close();
  });
  return async (t) => {
    if (!requireOrSkip(t, existsSync(CHROMIUM), `Chromium at ${CHROMIUM} (Debian package chromium)`)) return undefined;
    launched ??= (async () => {
      ensureWebBuilt();
      return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
    })();
    return launched;
  };
}

export interface PageProblem {
  kind: 'console' | 'pageerror' | 'requestfailed';
  text: string;
  url?: string;
}

/**
 * A page of its own browser context that keeps what went wrong: console
 * errors, uncaught errors, and every request URL, so that a test can say that
 * nothing left the server's origin.
 */
export class WatchedPage {
  readonly problems: PageProblem[] = [];
  readonly requests: string[] = [];
  /** Console errors that a test expects (the server going away), matched and dropped. */
  readonly allowed: RegExp[] = [];

  private constructor(
    readonly context: BrowserContext,
    readonly page: Page,
    readonly origin: string,
  ) {
    page.on('console', (msg: ConsoleMessage) => {
      if (msg.type() !== 'error') return;
      const text = msg.text();
      const url = msg.location()?.url;
      // Also the message as assertClean prints it, so that a pattern can name both (a status and a URL).
      const printed = url ? `${text} (${url})` : text;
      if (this.allowed.some((re) => re.test(text) || re.test(printed) || (url !== undefined && re.test(url)))) return;
      this.problems.push({ kind: 'console', text, ...(url ? { url } : {}) });
    });
    page.on('pageerror', (err) => this.problems.push({ kind: 'pageerror', text: `${err.name}: ${err.message}\n${err.stack ?? ''}` }));
    page.on('request', (req) => this.requests.push(req.url()));
    // Also WebSocket URLs: the live module's connection must stay on the origin too.
    page.on('websocket', (ws) => this.requests.push(ws.url()));
  }

  static async open(browser: Browser, baseUrl: string, options: { locale?: string; storage?: Record<string, string> } = {}): Promise<WatchedPage> {
    const context = await browser.newContext({ viewport: VIEWPORT, locale: options.locale ?? 'en-US', timezoneId: 'UTC' });
    if (options.storage) {
      const entries = options.storage;
      await context.addInitScript((kv: Record<string, string>) => {
        for (const [k, v] of Object.entries(kv)) window.localStorage.setItem(k, v);
      }, entries);
    }
    const page = await context.newPage();
    page.setDefaultTimeout(10_000);
    return new WatchedPage(context, page, new URL(baseUrl).origin);
  }

  /** Requests that went anywhere but the server (http(s) and ws(s) of its host and port; data: and blob: URLs are local). */
  foreignRequests(): string[] {
    const origin = new URL(this.origin);
    return this.requests.filter((raw) => {
      const url = new URL(raw);
      if (url.protocol === 'data:' || url.protocol === 'blob:' || raw === 'about:blank') return false;
      const sameHost = url.host === origin.host;
      const sameScheme = url.protocol === origin.protocol || url.protocol === (origin.protocol === 'https:' ? 'wss:' : 'ws:');
      return !(sameHost && sameScheme);
    });
  }

  /** Fails, listing them, when the page logged a console error, threw, or asked anything of another origin. */
  assertClean(where: string): void {
    const foreign = this.foreignRequests();
    const lines = [
      ...this.problems.map((p) => `${p.kind}: ${p.text}${p.url ? ` (${p.url})` : ''}`),
      ...foreign.map((u) => `request outside ${this.origin}: ${u}`),
    ];
    if (lines.length > 0) throw new Error(`${where}: the page was not clean:\n${lines.join('\n')}`);
  }

  async close(): Promise<void> {
    await this.context.close().catch(() => {});
  }
}

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  helpUrl: string;
  nodes: { target: unknown[]; html: string; failureSummary?: string }[];
}

/** Runs axe-core (injected from node_modules, no network) on the page as it is now; answers the serious and critical violations. */
export async function axeViolations(page: Page): Promise<AxeViolation[]> {
  const loaded = await page.evaluate(() => typeof (window as unknown as { axe?: unknown }).axe !== 'undefined');
  // Not page.addScriptTag: the server's CSP (script-src 'self') blocks inline scripts, as it should.
  // An evaluated script is not subject to it, so the page is checked as it is served.
  if (!loaded) await page.evaluate(`${readFileSync(AXE_PATH, 'utf8')}\n;void 0`);
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run: (ctx: unknown, opts: unknown) => Promise<{ violations: AxeViolation[] }> } }).axe;
    const result = await axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      helpUrl: v.helpUrl,
      nodes: v.nodes.slice(0, 5).map((n) => ({ target: n.target, html: n.html.slice(0, 200), failureSummary: n.failureSummary })),
    }));
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** A readable account of axe violations for a failure message. */
export function describeViolations(violations: AxeViolation[]): string {
  return violations
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.helpUrl})\n${v.nodes.map((n) => `    ${JSON.stringify(n.target)} ${n.html}`).join('\n')}`)
    .join('\n');
}

/** The text of an element (textContent, trimmed; '' when it has none). */
export async function textOf(locator: Locator): Promise<string> {
  return ((await locator.textContent()) ?? '').trim();
}

export interface WebServer {
  app: FastifyInstance;
  url: string;
  dir: string;
  close: () => Promise<void>;
}

/**
 * A real server on a loopback port with the dashboard, snapshots on and its
 * results in a SQLite file of a fresh folder (removed by close()).
 */
export async function startWebServer(overrides: Partial<Config> = {}, port = 0): Promise<WebServer> {
  const tmp = tempDir('sightline-web-');
  let app: FastifyInstance;
  try {
    app = await startApp({
      data_dir: tmp.dir,
      snapshots: true,
      snapshots_dir: join(tmp.dir, 'snapshots'),
      store_url: `sqlite:${join(tmp.dir, 'results.db')}`,
      rate_limit_per_second: 0,
      ...overrides,
    });
    await app.listen({ port, host: '127.0.0.1' });
  } catch (err) {
    tmp.cleanup();
    throw err;
  }
  const { port: bound } = app.server.address() as { port: number };
  let closed = false;
  return {
    app,
    url: `http://127.0.0.1:${bound}`,
    dir: tmp.dir,
    close: async () => {
      if (closed) return;
      closed = true;
      await app.close();
      tmp.cleanup();
    },
  };
}

export const SAMPLE_NG = ['ng-01.jpg', 'ng-02.jpg', 'ng-03.jpg', 'ng-04.jpg'].map((name) => readFileSync(join(ROOT, 'samples', name)));
export const SAMPLE_OK = ['ok-01.jpg', 'ok-02.jpg'].map((name) => readFileSync(join(ROOT, 'samples', name)));

export interface Posted {
  request_id: string;
  line: string;
  camera: string;
  verdict: 'ok' | 'ng';
}

/** POST /v1/detect over HTTP with the given result id; fails unless it answers 200. */
export async function postImage(
  baseUrl: string,
  image: Buffer,
  where: { line: string; camera: string; id?: string; headers?: Record<string, string> },
): Promise<Posted> {
  const headers: Record<string, string> = { 'content-type': 'image/jpeg', ...where.headers };
  if (where.id) headers['x-request-id'] = where.id;
  const res = await fetch(`${baseUrl}/v1/detect?line=${encodeURIComponent(where.line)}&camera=${encodeURIComponent(where.camera)}`, {
    method: 'POST',
    headers,
    body: new Uint8Array(image),
  });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`POST /v1/detect answered ${res.status}: ${body}`);
  return JSON.parse(body) as Posted;
}

/** Waits until GET /readyz answers 200 (the default model is loaded). */
export async function waitReady(baseUrl: string, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const status = await fetch(`${baseUrl}/readyz`).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200) return;
    if (Date.now() > until) throw new Error(`${baseUrl}/readyz did not answer 200 within ${timeoutMs} ms (last: ${status})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The CSS selector of a data-testid. */
export const tid = (id: string): string => `[data-testid="${id}"]`;

/** The pages of the dashboard, in the order of its menu. */
export const PAGES = ['lines', 'review', 'system', 'connections', 'jobs', 'models', 'alerts'] as const;
export type PageName = (typeof PAGES)[number];

/** Every key of a locale file, dotted (`app.nav.lines`), sorted. */
export function flattenKeys(obj: object, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object') out.push(...flattenKeys(v, key));
    else out.push(key);
  }
  return out.sort();
}

export const LOCALES = ['en', 'zh-CN'] as const;
export type Locale = (typeof LOCALES)[number];

export function readLocale(locale: Locale): Record<string, unknown> {
  return JSON.parse(readFileSync(join(ROOT, 'web', 'src', 'locales', `${locale}.json`), 'utf8')) as Record<string, unknown>;
}

/** Message keys that show up verbatim in a text: an untranslated string (vue-i18n shows the key when a message is missing). */
export function rawKeysIn(text: string, keys: string[]): string[] {
  return keys.filter((key) => new RegExp(`(^|[^\\w.-])${key.replaceAll('.', '\\.')}($|[^\\w.-])`).test(text));
}
