// The page keeps up across a platform restart: it shows "reconnecting"
// while the gateway is away, then resumes with `after_seq` so the operation
// page gets every event once and in order, and the list catches up.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launch, openPage, screenshot, waitForText } from '../lib/browser.mjs';
import { Platform } from '../lib/platform.mjs';

describe('reconnecting', () => {
  /** @type {Platform} */
  let platform;
  /** @type {import('playwright-core').Browser} */
  let browser;
  let token;
  let api;

  before(async () => {
    platform = await Platform.start({ name: 'reconnect' });
    browser = await launch();
    token = await platform.token('dora');
    api = platform.client(token);
  });

  after(async () => {
    await browser?.close();
    await platform?.stop();
  });

  test('the operation page shows the outage and resumes with every event once, in order', async () => {
    const op = await api.start('demo.sleep', { duration_ms: 6000, steps: 30 });
    const { page, record, context } = await openPage(browser, { token });
    await page.goto(`${platform.url}/ui/#/operations/${op.id}`);
    await waitForText(page, '#connection', 'Live');
    await page.waitForFunction(() => Number(document.querySelector('#op-progress [role=progressbar]')?.getAttribute('aria-valuenow')) >= 10, null, { timeout: 20_000, polling: 'raf' });

    await platform.stopDev();
    await waitForText(page, '#connection', 'Reconnecting');
    assert.equal(await page.locator('#connection').getAttribute('data-state'), 'reconnecting');
    await screenshot(page, 'reconnecting');
    await platform.startDev();
    await waitForText(page, '#connection', 'Live', 30_000);

    await waitForText(page, '#op-status', 'succeeded', 60_000);
    await page.waitForFunction(() => document.querySelector('#op-progress [role=progressbar]')?.getAttribute('aria-valuenow') === '100', null, { timeout: 10_000, polling: 'raf' });
    const server = await api.get(op.id);
    const log = await api.request('GET', `/v1/operations/${op.id}/events?limit=1000`);
    const expected = log.events.map((event) => event.seq).reverse();
    await page.waitForFunction((count) => document.querySelectorAll('#op-timeline li[data-seq]').length >= count, expected.length, { timeout: 10_000, polling: 'raf' });
    const shown = await page.locator('#op-timeline li[data-seq]').evaluateAll((items) => items.map((item) => Number(item.dataset.seq)));
    assert.deepEqual(shown, expected, 'every event of the log, once, newest first');
    assert.equal(shown[0], server.seq);
    assert.ok(log.events.some((event) => event.type === 'retrying'), 'the restart interrupted the attempt');
    assert.deepEqual(record.dialogs, []);
    assert.deepEqual(record.errors, []);
    await context.close();
  });

  test('the list catches up after a reconnect', async () => {
    const { page, context } = await openPage(browser, { token });
    await page.goto(`${platform.url}/ui/#/operations`);
    await waitForText(page, '#connection', 'Live');
    const op = await api.start('demo.sleep', { duration_ms: 3000, steps: 6 });
    await waitForText(page, `.op-row[data-id="${op.id}"] .badge`, 'running');

    await platform.stopDev();
    await waitForText(page, '#connection', 'Reconnecting');
    await platform.startDev();
    await waitForText(page, '#connection', 'Live', 30_000);
    await waitForText(page, `.op-row[data-id="${op.id}"] .badge`, 'succeeded', 60_000);
    assert.equal(await page.locator(`.op-row[data-id="${op.id}"] [role=progressbar]`).getAttribute('aria-valuenow'), '100');

    // Started while the page was away from the list: there after the reconnect's re-read.
    await platform.stopDev();
    await waitForText(page, '#connection', 'Reconnecting');
    await platform.startDev();
    const late = await api.start('demo.sleep', { duration_ms: 0, steps: 1 });
    await waitForText(page, `.op-row[data-id="${late.id}"] .badge`, 'succeeded', 30_000);
    await context.close();
  });
});
