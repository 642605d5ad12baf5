// The Connections page with auth on: an admin signs in on the page and kicks a
// client's WebSocket, which closes; a viewer sees no kick button (nor review
// buttons) and the API refuses the kick.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { waitFor } from './helpers/cli-process.js';
import { StreamClient } from './helpers/stream-client.js';
import { SAMPLE_NG, WatchedPage, browserPerFile, postImage, startWebServer, textOf, tid } from './helpers/browser.js';
import { bearer } from './auth-helpers.js';

const browserFor = browserPerFile();

async function signIn(page: Page, key: string): Promise<void> {
  await page.locator(tid('login')).waitFor();
  await page.locator(tid('login-key')).fill(key);
  await page.locator(tid('login-submit')).click();
  await page.locator(tid('login')).waitFor({ state: 'detached' });
}

test('with auth on, an admin signs in and kicks a WebSocket from the Connections page (it closes with 4000); a viewer sees no kick button and the API answers 403', {
  timeout: 90_000,
}, async (t) => {
  const browser = await browserFor(t);
  if (!browser) return;
  const server = await startWebServer({ auth: 'on' });
  t.after(() => server.close());
  const admin = (await server.app.apiKeys.create('web-admin', ['admin'])).key;
  const viewer = (await server.app.apiKeys.create('wall-screen', ['viewer'])).key;
  const script = (await server.app.apiKeys.create('line-script', ['viewer'])).key;
  const ng = await postImage(server.url, SAMPLE_NG[0]!, { line: 'line-k', camera: 'cam-1', headers: bearer(admin) });
  assert.equal(ng.verdict, 'ng');

  // A client of the stream, to be kicked.
  const client = await StreamClient.open(server.app, '?client_kind=api_script', { headers: bearer(script) });
  t.after(() => client.ws.terminate());
  const hello = client.of('hello')[0]!;
  const id = hello.connection_id;

  const watched = await WatchedPage.open(browser, server.url);
  t.after(() => watched.close());
  const { page } = watched;
  // Before a key is given every API call is 401 (that is what opens the prompt); a viewer's
  // role probes and the admin-only list answer 403. The browser logs those answers.
  watched.allowed.push(/Failed to load resource: the server responded with a status of 40[13]/);
  await page.goto(`${server.url}/#/connections`);
  await signIn(page, admin);
  assert.match(await textOf(page.locator(tid('who'))), /admin/);
  const row = page.locator(tid(`connection-${id}`));
  await row.waitFor();
  assert.match(await textOf(row), /line-script/, 'the row names the key');
  const kickedAt = Date.now();
  await page.locator(tid(`kick-${id}`)).click();
  const closed = await client.until(() => client.closed, 5000, 'the kicked socket closes');
  assert.equal(closed.code, 4000);
  assert.equal(closed.reason, 'closed by admin');
  await row.waitFor({ state: 'detached' });
  t.diagnostic(`kicked socket closed and its row gone ${Date.now() - kickedAt} ms after the click`);
  const list = (await (await fetch(`${server.url}/v1/admin/connections?limit=1000`, { headers: bearer(admin) })).json()) as { connections: { id: string }[] };
  assert.ok(!list.connections.some((c) => c.id === id), 'the registry no longer lists it');
  assert.ok(
    watched.requests.some((u) => /\/v1\/stream\?.*access_token=/.test(u)),
    "the page's own stream carries the credential (browsers cannot send headers on a WebSocket)",
  );
  // The key lives in the tab's sessionStorage only.
  assert.equal(await page.evaluate(() => localStorage.getItem('sightline.key')), null);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('sightline.key')), admin);

  // A viewer: sign out, sign in with the viewer key.
  const other = await StreamClient.open(server.app, '?client_kind=api_script', { headers: bearer(script) });
  t.after(() => other.ws.terminate());
  const otherId = other.of('hello')[0]!.connection_id;
  await page.locator(tid('logout')).click();
  await signIn(page, viewer);
  await waitFor(async () => /viewer/.test(await textOf(page.locator(tid('who')))), 'the page says viewer', 5000);
  await page.locator(tid('connections-forbidden')).waitFor();
  assert.equal(await page.locator('[data-testid^="kick-"]').count(), 0, 'no kick button for a viewer');
  assert.equal(await page.locator(tid('connections-table')).count(), 0);
  // No review buttons either.
  await page.goto(`${server.url}/#/review?id=${ng.request_id}`);
  await page.locator(`${tid('review-detail')}[data-id="${ng.request_id}"]`).waitFor();
  await page.locator(tid('review-status')).waitFor();
  assert.equal(await page.locator(tid('review-false-call')).count(), 0, 'no review buttons for a viewer');

  const refused = await fetch(`${server.url}/v1/admin/connections/${otherId}`, { method: 'DELETE', headers: bearer(viewer) });
  assert.equal(refused.status, 403);
  assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'FORBIDDEN');
  const listRefused = await fetch(`${server.url}/v1/admin/connections`, { headers: bearer(viewer) });
  assert.equal(listRefused.status, 403);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(other.closed, undefined, 'the refused kick closed nothing');
  watched.assertClean('connections with auth');
});
