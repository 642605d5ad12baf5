// The Lines page under load: 20 lines at 5 fps each for 60 s from `sightline
// simulate`. Every result the server sends is shown within 1 s, none is lost,
// main-thread long tasks are measured and reported, and the JS heap stays flat.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { CLI, ROOT, SightlineProcess, cleanups, waitFor } from './helpers/cli-process.js';
import { tempDir } from './helpers/fixtures.js';
import { WatchedPage, browserPerFile, tid, waitReady } from './helpers/browser.js';

const browserFor = browserPerFile();

const LINES = 20;
const FPS = 5;
const DURATION_S = 60;
/** What the page must do: show a result within this long of the server sending it. */
const SHOWN_WITHIN_MS = 1000;

interface PagePerf {
  on: boolean;
  received: number;
  shown: number;
  /** server `at` → in the DOM (ms), and page receipt → in the DOM */
  latency: number[];
  pageLatency: number[];
  longTasks: { start: number; duration: number }[];
  ids: Set<string>;
  pending: Map<string, { id: string; at: number; recv: number }[]>;
  tileOf: Map<string, string>;
}

/**
 * Runs in the page before its scripts: wraps WebSocket to stamp every result event
 * of /v1/stream as it arrives (before the live module sees it), and watches the
 * tiles' `data-last-result` attribute, which the Lines page sets with the counts:
 * when a tile shows result N, every earlier result of that tile is shown too.
 * Plain JavaScript (a string): what tsx compiles may call helpers the page lacks.
 */
const INSTRUMENT = `(() => {
  const perf = { on: false, received: 0, shown: 0, latency: [], pageLatency: [], longTasks: [], ids: new Set(), pending: new Map(), tileOf: new Map() };
  window.__perf = perf;
  const nowMs = () => performance.timeOrigin + performance.now();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) perf.longTasks.push({ start: e.startTime, duration: e.duration });
  }).observe({ type: 'longtask', buffered: true });
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      if (!String(url).includes('/v1/stream')) return;
      this.addEventListener('message', (ev) => {
        if (typeof ev.data !== 'string' || !ev.data.includes('"result"')) return;
        const msg = JSON.parse(ev.data);
        if (msg.type !== 'event' || !msg.event || msg.event.type !== 'result') return;
        const r = msg.event.result;
        perf.ids.add(r.request_id);
        if (!perf.on) return;
        const key = r.line + '\\u0000' + r.camera;
        let list = perf.pending.get(key);
        if (!list) perf.pending.set(key, (list = []));
        list.push({ id: r.request_id, at: Date.parse(msg.event.at), recv: nowMs() });
        perf.tileOf.set(r.request_id, key);
        perf.received++;
      });
    }
  };
  new MutationObserver((records) => {
    const now = nowMs();
    for (const rec of records) {
      const id = rec.target.getAttribute('data-last-result');
      const key = id ? perf.tileOf.get(id) : undefined;
      if (!id || !key) continue;
      const list = perf.pending.get(key);
      const upTo = list.findIndex((e) => e.id === id);
      if (upTo < 0) continue;
      for (const e of list.splice(0, upTo + 1)) {
        perf.tileOf.delete(e.id);
        perf.latency.push(now - e.at);
        perf.pageLatency.push(now - e.recv);
        perf.shown++;
      }
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-last-result'] });
})();`;

const quantile = (sorted: number[], q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : Number.NaN);
const ms = (v: number) => `${v.toFixed(0)} ms`;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

test(`the Lines page keeps up with ${LINES} lines at ${FPS} fps for ${DURATION_S} s: every result shown within 1 s, none lost, long tasks reported, heap flat`, {
  timeout: 180_000,
}, async (t) => {
  const browser = await browserFor(t);
  if (!browser) return;
  const defer = cleanups(t);
  const tmp = tempDir('sightline-web-load-');
  defer(tmp.cleanup);
  const server = new SightlineProcess('serve', [
    'serve',
    ...['--host', '127.0.0.1', '--port', '0', '--data-dir', tmp.dir, '--store-url', `sqlite:${join(tmp.dir, 'results.db')}`],
    ...['--snapshots', '--intra-op-threads', '1', '--log-level', 'info', '--rate-limit-per-second', '0'],
  ]);
  defer(() => server.kill());
  const url = await server.baseUrl();
  await waitReady(url);

  // What the server sends: a subscriber of every line, from the test.
  const sent = new Map<string, number>();
  const subscriber = new WebSocket(`${url.replace('http', 'ws')}/v1/stream?lines=*&client_kind=system`);
  defer(() => subscriber.terminate());
  subscriber.on('message', (data) => {
    const text = data.toString();
    if (!text.includes('"result"')) return;
    const msg = JSON.parse(text) as { type: string; event?: { type: string; at: string; result: { request_id: string } } };
    if (msg.type === 'event' && msg.event?.type === 'result') sent.set(msg.event.result.request_id, Date.parse(msg.event.at));
  });
  await new Promise<void>((resolve, reject) => {
    subscriber.once('open', () => resolve());
    subscriber.once('error', reject);
  });

  const watched = await WatchedPage.open(browser, url);
  defer(() => watched.close());
  const { page, context } = watched;
  // Under this overload (about half the frames are refused OVERLOADED) a new line's first
  // inspected frame, and its snapshot written in the background, can come after the tile's
  // first look at latest.jpg: the tile retries and shows "no frame" meanwhile (AuthImage),
  // and Chromium logs the 404. Any other console error still fails the test.
  watched.allowed.push(/status of 404 \(Not Found\) \(http:\/\/[^)]+\/v1\/lines\/[^/)]+\/latest\.jpg\?/);
  await context.addInitScript({ content: INSTRUMENT });
  await page.goto(`${url}/#/lines`);
  await page.locator(tid('page-lines')).waitFor();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  const heap = async () => {
    await cdp.send('HeapProfiler.collectGarbage');
    const { metrics } = await cdp.send('Performance.getMetrics');
    const m = Object.fromEntries(metrics.map((x) => [x.name, x.value]));
    return { used: m.JSHeapUsedSize ?? 0, total: m.JSHeapTotalSize ?? 0, nodes: m.Nodes ?? 0, listeners: m.JSEventListeners ?? 0 };
  };

  const simStarted = Date.now();
  const sim = spawn(
    process.execPath,
    [...CLI, 'simulate', '--url', url, '--lines', String(LINES), '--fps', String(FPS), '--duration', String(DURATION_S), '--transport', 'ws', '--json'],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  defer(() => sim.kill('SIGKILL'));
  let simOut = '';
  let simErr = '';
  sim.stdout.on('data', (d) => (simOut += d));
  sim.stderr.on('data', (d) => (simErr = (simErr + d).slice(-4000)));
  const simExit = new Promise<number | null>((resolve) => sim.once('exit', (code) => resolve(code)));

  // Warm-up: every line has its tile (new lines make the page read /v1/lines), then a few seconds more.
  await waitFor(async () => (await page.locator('[data-testid^="tile-line-"][data-state]').count()) >= LINES, `${LINES} tiles`, 20_000);
  await page.waitForTimeout(3000);
  const start = await heap();
  const measureFrom = Date.now();
  const pageFrom = await page.evaluate(() => {
    (window as unknown as { __perf: PagePerf }).__perf.on = true;
    return performance.now();
  });

  const code = await simExit;
  const measureTo = Date.now();
  const pageTo = await page.evaluate(() => {
    (window as unknown as { __perf: PagePerf }).__perf.on = false;
    return performance.now();
  });
  // The last results in flight reach the page and its DOM.
  await page.waitForTimeout(2000);
  const end = await heap();
  assert.equal(code, 0, `simulate exited ${code}\n${simErr}`);
  const report = JSON.parse(simOut) as {
    totals: { sent: number; results: number; errors: number; drops: number };
    achieved_fps: { results: number };
    errors_by_code: Record<string, number>;
  };

  const perf = await page.evaluate(() => {
    const p = (window as unknown as { __perf: PagePerf }).__perf;
    return {
      received: p.received,
      shown: p.shown,
      latency: p.latency,
      pageLatency: p.pageLatency,
      longTasks: p.longTasks,
      ids: [...p.ids],
      unshown: [...p.pending.values()].reduce((n, l) => n + l.length, 0),
    };
  });
  const latency = [...perf.latency].sort((a, b) => a - b);
  const pageLatency = [...perf.pageLatency].sort((a, b) => a - b);
  const measuredS = (measureTo - measureFrom) / 1000;
  const longTasks = perf.longTasks.filter((l) => l.start >= pageFrom && l.start <= pageTo);
  const longTotal = longTasks.reduce((sum, l) => sum + l.duration, 0);
  const longMax = Math.max(0, ...longTasks.map((l) => l.duration));
  const loading = perf.longTasks.filter((l) => l.start < pageFrom);
  t.diagnostic(
    `simulate: sent ${report.totals.sent}, results ${report.totals.results} (${report.achieved_fps.results}/s), errors ${report.totals.errors} ${JSON.stringify(report.errors_by_code)}, drops ${report.totals.drops}, ${((Date.now() - simStarted) / 1000).toFixed(0)} s`,
  );
  t.diagnostic(`measured ${measuredS.toFixed(1)} s: the page received ${perf.received} results and showed ${perf.shown}; ${perf.unshown} never shown`);
  t.diagnostic(
    `server sent → in the DOM: p50 ${ms(quantile(latency, 0.5))}, p95 ${ms(quantile(latency, 0.95))}, p99 ${ms(quantile(latency, 0.99))}, max ${ms(latency.at(-1) ?? Number.NaN)}; page receipt → DOM: p50 ${ms(quantile(pageLatency, 0.5))}, p99 ${ms(quantile(pageLatency, 0.99))}, max ${ms(pageLatency.at(-1) ?? Number.NaN)}`,
  );
  t.diagnostic(
    `main-thread long tasks (> 50 ms) in the measured ${measuredS.toFixed(0)} s: ${longTasks.length}, ${ms(longTotal)} in all (${((longTotal / (pageTo - pageFrom)) * 100).toFixed(1)} % of the time), longest ${ms(longMax)}; during load and warm-up: ${loading.length}, longest ${ms(Math.max(0, ...loading.map((l) => l.duration)))}`,
  );
  t.diagnostic(
    `JS heap after GC: ${mb(start.used)} → ${mb(end.used)} (${(((end.used - start.used) / start.used) * 100).toFixed(1)} %), DOM nodes ${start.nodes} → ${end.nodes}, listeners ${start.listeners} → ${end.listeners}`,
  );

  // Every result the server sent in the measured window (its own subscriber saw them) reached the page.
  const inWindow = [...sent].filter(([, at]) => at >= measureFrom + 500 && at <= measureTo - 500).map(([id]) => id);
  assert.ok(inWindow.length >= (LINES * FPS * DURATION_S) / 10, `results flowed (${inWindow.length} in the window)`);
  const pageIds = new Set(perf.ids);
  const lost = inWindow.filter((id) => !pageIds.has(id));
  assert.deepEqual(lost.slice(0, 10), [], `${lost.length} of ${inWindow.length} results the server sent never reached the page`);
  assert.ok(perf.received >= inWindow.length, `the page stamped what it received (${perf.received} ≥ ${inWindow.length})`);
  assert.equal(perf.unshown, 0, 'every result the page received is shown on its tile');
  assert.equal(perf.shown, perf.received);
  const late = latency.filter((v) => v > SHOWN_WITHIN_MS).length;
  assert.equal(
    late,
    0,
    `${late} of ${latency.length} results shown later than ${SHOWN_WITHIN_MS} ms after the server sent them (max ${ms(latency.at(-1) ?? 0)})`,
  );
  // Memory stays flat: less than +50 %, or less than +20 MB.
  const growth = end.used - start.used;
  assert.ok(growth < 20 * 1024 * 1024 || end.used < start.used * 1.5, `the JS heap grew from ${mb(start.used)} to ${mb(end.used)}`);
  assert.ok(end.nodes < start.nodes * 1.5 + 500, `DOM nodes ${start.nodes} → ${end.nodes}`);
  watched.assertClean('under load');
});
