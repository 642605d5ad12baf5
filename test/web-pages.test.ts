// The dashboard in Chromium against a real server with real data: every page in
// both languages, clean (no console error, no request off the origin), axe-core,
// and the screenshots of docs/dashboard.md (SIGHTLINE_SCREENSHOTS=1).
import { test, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import type { Browser, Page } from 'playwright-core';
import { ROOT, waitFor } from './helpers/cli-process.js';
import {
  LOCALES,
  PAGES,
  SAMPLE_NG,
  SAMPLE_OK,
  WatchedPage,
  axeViolations,
  browserPerFile,
  describeViolations,
  flattenKeys,
  postImage,
  rawKeysIn,
  readLocale,
  startWebServer,
  textOf,
  tid,
  type Locale,
  type PageName,
  type Posted,
  type WebServer,
} from './helpers/browser.js';

const browserFor = browserPerFile();
const KEYS = flattenKeys(readLocale('en'));

interface World {
  browser: Browser;
  server: WebServer;
  /** NG results of line-a/cam-1 and line-b/cam-2. */
  ng: Posted[];
  counts: Record<string, { ok: number; ng: number }>;
  model: { name: string; version: string };
}

let world: Promise<World> | undefined;
let keepAlive: NodeJS.Timeout | undefined;
after(async () => {
  clearInterval(keepAlive);
  const w = await world?.catch(() => undefined);
  await w?.server.close();
});

/**
 * One server for the file, with data: NG and OK results on two lines (their
 * cameras kept online by a frame every second), a third camera that went
 * offline (its alert firing), a finished job.
 */
async function setup(t: TestContext): Promise<World | undefined> {
  const browser = await browserFor(t);
  if (!browser) return undefined;
  world ??= (async () => {
    const server = await startWebServer({
      camera_stale_after_ms: 4000,
      camera_offline_after_ms: 8000,
      line_registry_flush_ms: 200,
      alert_eval_interval_ms: 500,
      alert_for_ms: 0,
    });
    const counts: World['counts'] = { 'line-a/cam-1': { ok: 0, ng: 0 }, 'line-b/cam-2': { ok: 0, ng: 0 } };
    const ng: Posted[] = [];
    const post = async (line: string, camera: string, image: Buffer) => {
      const r = await postImage(server.url, image, { line, camera });
      const c = counts[`${line}/${camera}`];
      if (c) c[r.verdict]++;
      if (r.verdict === 'ng') ng.push(r);
      return r;
    };
    await post('line-c', 'cam-9', SAMPLE_OK[0]!);
    for (const image of SAMPLE_NG.slice(0, 3)) await post('line-a', 'cam-1', image);
    for (const image of SAMPLE_OK) await post('line-a', 'cam-1', image);
    await post('line-b', 'cam-2', SAMPLE_NG[3]!);
    await post('line-b', 'cam-2', SAMPLE_OK[0]!);
    assert.ok(ng.length >= 4, `the built-in model marks the NG samples NG (${ng.length} of 4)`);
    const job = await fetch(`${server.url}/v1/jobs?line=line-b&camera=cam-2`, {
      method: 'POST',
      headers: { 'content-type': 'image/jpeg' },
      body: new Uint8Array(SAMPLE_OK[1]!),
    });
    assert.equal(job.status, 202, await job.text());
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as { models: { name: string; version: string; default: boolean }[] };
    // The version that serves (built-in: 2; version 1 is listed but not loaded).
    const model = models.models.find((m) => m.default) ?? models.models[0]!;
    // Cameras that keep sending: the two lines stay online while line-c goes offline.
    let i = 0;
    keepAlive = setInterval(() => {
      const image = i++ % 4 === 0 ? SAMPLE_NG[i % 4]! : SAMPLE_OK[i % 2]!;
      void post(i % 2 ? 'line-a' : 'line-b', i % 2 ? 'cam-1' : 'cam-2', image).catch(() => {});
    }, 1000);
    keepAlive.unref();
    const firing = async () =>
      ((await (await fetch(`${server.url}/v1/alerts`)).json()) as { alerts: { name: string; state: string }[] }).alerts.some(
        (a) => a.name === 'SightlineCameraOffline' && a.state === 'firing',
      );
    await waitFor(firing, 'line-c/cam-9 offline and its alert firing', 20_000);
    return { browser, server, ng, counts, model };
  })();
  return world;
}

/** Waits until the page shows its real data (the API's answers rendered). */
async function waitForData(page: Page, name: PageName, w: World): Promise<void> {
  await page.locator(tid(`page-${name}`)).waitFor();
  await page.locator('h1').first().waitFor();
  switch (name) {
    case 'lines': {
      for (const key of ['line-a-cam-1', 'line-b-cam-2', 'line-c-cam-9']) await page.locator(tid(`tile-${key}`)).waitFor();
      await page.locator(`${tid('tile-line-c-cam-9')}[data-state="offline"]`).waitFor();
      const ng = Number(await textOf(page.locator(`${tid('tile-line-a-cam-1')} ${tid('tile-ng')}`)));
      assert.ok(ng >= 3, `line-a/cam-1 shows its NG count (${ng})`);
      break;
    }
    case 'review':
      for (const r of w.ng.slice(0, 4)) await page.locator(`${tid('review-item')}[data-id="${r.request_id}"]`).waitFor();
      break;
    case 'system':
      await page.locator(tid('system-tiles')).waitFor();
      await page.locator(tid('system-charts')).waitFor();
      break;
    case 'connections':
      await page.locator(tid('connections-table')).waitFor();
      await page.locator('[data-testid^="connection-"]').first().waitFor();
      break;
    case 'jobs':
      await page.locator(tid('jobs-tiles')).waitFor();
      break;
    case 'models':
      await page.locator(tid(`model-${w.model.name}-${w.model.version}`)).waitFor();
      // The version that answers requests is marked.
      await page.locator(`${tid(`model-${w.model.name}-${w.model.version}`)} ${tid('model-serving')}`).waitFor();
      break;
    case 'alerts':
      await page.locator(`${tid('alerts-firing')} ${tid('alert-SightlineCameraOffline')}`).waitFor();
      // The server's history (GET /v1/alerts/history) lists how it got there.
      await page.locator(tid('alerts-history'), { hasText: 'SightlineCameraOffline' }).waitFor();
      break;
  }
}

async function gotoPage(watched: WatchedPage, name: PageName): Promise<void> {
  await watched.page.locator(tid(`nav-${name}`)).click();
  await waitFor(
    () => watched.page.url().includes(`#/${name}`),
    () => `#/${name} (the page logged: ${JSON.stringify(watched.problems)})`,
    5000,
  );
}

async function setLanguage(page: Page, locale: Locale): Promise<void> {
  await page.locator(tid('lang-switch')).selectOption(locale);
  await waitFor(async () => (await page.evaluate(() => document.documentElement.lang)) === locale, `<html lang="${locale}">`, 5000);
}

async function missingKeys(page: Page): Promise<string[]> {
  return page.evaluate(() => [...((window as unknown as { __sightlineMissingKeys?: Set<string> }).__sightlineMissingKeys ?? [])]);
}

test('every page renders its real data in English and in Chinese: headings translated, no raw message key, no console error, no request off the origin', {
  timeout: 150_000,
}, async (t) => {
  const w = await setup(t);
  if (!w) return;
  const watched = await WatchedPage.open(w.browser, w.server.url, { locale: 'en-US' });
  t.after(() => watched.close());
  const { page } = watched;
  await page.goto(`${w.server.url}/`);
  await waitFor(() => page.url().endsWith('#/lines'), 'the home page is #/lines', 5000);
  assert.equal(await page.locator(tid('lang-switch')).inputValue(), 'en', 'an en-US browser starts in English');

  const headings: Record<Locale, Partial<Record<PageName, string>>> = { en: {}, 'zh-CN': {} };
  for (const locale of LOCALES) {
    if (locale !== 'en') await setLanguage(page, locale);
    for (const name of PAGES) {
      await gotoPage(watched, name);
      await waitForData(page, name, w);
      const h1 = await textOf(page.locator(`${tid(`page-${name}`)} h1`));
      assert.ok(h1.length > 0, `${name} (${locale}) has a heading`);
      headings[locale][name] = h1;
      const text = (await page.locator('body').allInnerTexts()).join('\n');
      assert.deepEqual(rawKeysIn(text, KEYS), [], `${name} (${locale}) shows no raw message key`);
      if (locale === 'zh-CN') assert.match(text, /[\u4e00-\u9fff]/, `${name} is in Chinese`);
      watched.assertClean(`${name} (${locale})`);
    }
  }
  for (const name of PAGES) assert.notEqual(headings['zh-CN'][name], headings.en[name], `the ${name} heading is translated`);
  assert.equal(headings.en.system, 'System');
  assert.deepEqual(await missingKeys(page), [], 'no message was missing');

  // The language is remembered.
  await page.reload();
  await page.locator(tid('page-alerts')).waitFor();
  assert.equal(await page.locator(tid('lang-switch')).inputValue(), 'zh-CN');
  assert.equal(await textOf(page.locator(`${tid('page-alerts')} h1`)), headings['zh-CN'].alerts);
  watched.assertClean('after a reload');
  assert.ok(watched.requests.length > 10, `the requests were recorded (${watched.requests.length})`);
  assert.ok(
    watched.requests.some((u) => u.startsWith('ws://') && u.includes('/v1/stream')),
    'the live connection is recorded (and on the origin)',
  );
});

test('axe-core finds no serious or critical accessibility violation on any page, in either language', { timeout: 150_000 }, async (t) => {
  const w = await setup(t);
  if (!w) return;
  const watched = await WatchedPage.open(w.browser, w.server.url);
  t.after(() => watched.close());
  const { page } = watched;
  await page.goto(`${w.server.url}/#/lines`);
  const found: string[] = [];
  for (const locale of LOCALES) {
    if (locale !== 'en') await setLanguage(page, locale);
    for (const name of PAGES) {
      await gotoPage(watched, name);
      await waitForData(page, name, w);
      if (name === 'review') {
        // The open result too: its buttons and tables.
        await page.locator(`${tid('review-item')}[data-id="${w.ng[0]!.request_id}"]`).click();
        await page.locator(tid('review-false-call')).waitFor();
      }
      const violations = await axeViolations(page);
      t.diagnostic(`axe ${name} (${locale}): ${violations.length} serious/critical`);
      if (violations.length > 0) found.push(`--- ${name} (${locale}) ---\n${describeViolations(violations)}`);
    }
  }
  assert.equal(found.length, 0, `axe-core violations:\n${found.join('\n')}`);
  watched.assertClean('axe run');
  // The check can fail: a button without a name is a critical violation.
  await page.evaluate(() => {
    const b = document.createElement('button');
    b.id = 'axe-self-check';
    document.querySelector('main')?.append(b);
  });
  const broken = await axeViolations(page);
  assert.ok(
    broken.some((v) => v.id === 'button-name'),
    `axe-core reports an unnamed button (got ${broken.map((v) => v.id).join(', ') || 'nothing'})`,
  );
});

test("System's latency tiles agree with each other: p50 ≤ p95 ≤ p99", { timeout: 90_000 }, async (t) => {
  const w = await setup(t);
  if (!w) return;
  const watched = await WatchedPage.open(w.browser, w.server.url);
  t.after(() => watched.close());
  const { page } = watched;
  await page.goto(`${w.server.url}/#/system`);
  await waitForData(page, 'system', w);
  const millis = async (id: string) => {
    const text = await textOf(page.locator(`${tid(`system-tile-${id}`)} dd`));
    const m = /^([\d.,]+)\s*(ms|s)\b/.exec(text);
    assert.ok(m, `system-tile-${id} shows a duration (${JSON.stringify(text)})`);
    return Number(m[1]!.replaceAll(',', '')) * (m[2] === 's' ? 1000 : 1);
  };
  // Once the live status (every 5 s) and the history are both in, every moment's figures must agree.
  await page.waitForTimeout(6000);
  const seen: string[] = [];
  for (let i = 0; i < 4; i++) {
    const [p50, p95, p99] = [await millis('p50'), await millis('p95'), await millis('p99')];
    seen.push(`p50 ${p50} ms, p95 ${p95} ms, p99 ${p99} ms`);
    assert.ok(p50 <= p95 && p95 <= p99, `the System tiles disagree: ${seen.at(-1)} (samples so far: ${seen.join('; ')})`);
    await page.waitForTimeout(2500);
  }
  t.diagnostic(seen.join('; '));
  watched.assertClean('system tiles');
});

test('screenshots of every page in both languages for docs/dashboard.md (written only with SIGHTLINE_SCREENSHOTS=1)', { timeout: 150_000 }, async (t) => {
  if (process.env.SIGHTLINE_SCREENSHOTS !== '1') {
    t.skip('set SIGHTLINE_SCREENSHOTS=1 to write docs/images/dashboard/*.png');
    return;
  }
  const w = await setup(t);
  if (!w) return;
  const dir = join(ROOT, 'docs', 'images', 'dashboard');
  mkdirSync(dir, { recursive: true });
  for (const locale of LOCALES) {
    const watched = await WatchedPage.open(w.browser, w.server.url, { locale: locale === 'en' ? 'en-US' : 'zh-CN', storage: { 'sightline.locale': locale } });
    try {
      const { page } = watched;
      await page.goto(`${w.server.url}/#/lines`);
      for (const name of PAGES) {
        await gotoPage(watched, name);
        await waitForData(page, name, w);
        if (name === 'review') {
          await page.locator(`${tid('review-item')}[data-id="${w.ng[0]!.request_id}"]`).click();
          await page
            .locator(`${tid('review-detail')} img`)
            .first()
            .waitFor();
        }
        if (name === 'lines') await waitFor(async () => (await page.locator(`${tid('tile-image')} img`).count()) >= 2, 'tile frames', 10_000);
        // Images and charts settle; no hover highlight.
        await page.mouse.move(1279, 799);
        await page.waitForTimeout(1200);
        const png = await page.screenshot({ type: 'png', fullPage: false });
        const path = join(dir, `${name}-${locale}.png`);
        const small = await sharp(png).png({ palette: true, quality: 80, compressionLevel: 9, effort: 8 }).toBuffer();
        writeFileSync(path, small);
        const size = statSync(path).size;
        t.diagnostic(`${path}: ${Math.round(size / 1024)} KB`);
        assert.ok(size <= 250 * 1024, `${name}-${locale}.png is ${size} bytes (at most 250 KB)`);
      }
      watched.assertClean(`screenshots (${locale})`);
    } finally {
      await watched.close();
    }
  }
});
