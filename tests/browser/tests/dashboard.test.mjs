// The dashboard in a real browser against a real platform: sign in, the
// list and its owner boundary, the start form (with a 422), live progress of
// a fan-out to 100%, cancel and delete, hostile text, the admin view.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launch, openPage, screenshot, waitForText } from '../lib/browser.mjs';
import { Platform } from '../lib/platform.mjs';

const HOSTILE = '<img src=x onerror=alert(1)>';

describe('dashboard', () => {
  /** @type {Platform} */
  let platform;
  /** @type {import('playwright-core').Browser} */
  let browser;
  let alice;
  let bob;

  before(async () => {
    // 24 jobs at a time: a fan-out of 50 children runs in waves, so its bar moves in steps.
    platform = await Platform.start({ name: 'dashboard', workerConcurrency: 24 });
    browser = await launch();
    alice = { token: await platform.token('alice') };
    bob = { token: await platform.token('bob') };
    alice.api = platform.client(alice.token);
    bob.api = platform.client(bob.token);
  });

  after(async () => {
    await browser?.close();
    await platform?.stop();
  });

  test('signs in with a pasted token and shows only the user\'s own operations', async () => {
    const mine = await alice.api.start('demo.sleep', { duration_ms: 0, steps: 1 });
    const theirs = await bob.api.start('demo.sleep', { duration_ms: 0, steps: 1 });
    await alice.api.wait(mine.id);

    const { page, record, context } = await openPage(browser);
    await page.goto(platform.url);
    assert.match(page.url(), /\/ui\/#?/);
    await page.locator('#token').fill('not a token');
    await page.locator('#signin-submit').click();
    await waitForText(page, '#signin-error', 'not a token');

    const forged = `${alice.token.slice(0, -4)}AAAA`;
    await page.locator('#token').fill(forged);
    await page.locator('#signin-submit').click();
    await waitForText(page, '#signin-error', 'refused');
    await screenshot(page, 'signin-refused');

    await page.locator('#token').fill(alice.token);
    await page.locator('#signin-submit').click();
    await waitForText(page, '#user-sub', 'alice');
    await page.locator(`.op-row[data-id="${mine.id}"]`).waitFor();
    assert.equal(await page.locator(`.op-row[data-id="${theirs.id}"]`).count(), 0, 'bob\'s operation is not listed');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('longrun.token')), alice.token);
    await waitForText(page, '#connection', 'Live');
    await screenshot(page, 'list');

    // Another owner's operation, asked for by id, is simply not there.
    await page.goto(`${platform.url}/ui/#/operations/${theirs.id}`);
    await waitForText(page, '.view-op .banner', 'No such operation');
    assert.equal(await page.locator('#op-title').textContent(), '');

    await page.locator('#signout').click();
    await page.locator('#token').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('longrun.token')), null);
    assert.deepEqual(record.dialogs, []);
    assert.deepEqual(record.errors, []);
    await context.close();
  });

  test('starts a demo.fanout of 50 children from the form and shows it reach 100% live', async () => {
    const { page, record, context } = await openPage(browser, { token: alice.token });
    await page.goto(`${platform.url}/ui/#/start`);
    await page.locator('a.kind', { hasText: 'demo.fanout' }).click();
    await page.locator('#field-children').fill('50');
    await page.locator('#field-child_duration_ms').fill('1500');
    await page.locator('#field-child_steps').fill('3');
    await page.locator('#start-submit').click();
    await page.waitForURL(/#\/operations\/[0-9a-f-]{36}$/);
    const id = decodeURIComponent(page.url().split('/').pop());
    // Marks this document: a reload would lose it.
    await page.evaluate(() => { window.notReloaded = true; });

    await waitForText(page, '#op-title', 'demo.fanout');
    await waitForText(page, '#op-status', /running|succeeded/);
    await page.locator('#op-children .ops-body .op-row').first().waitFor();
    await page.waitForFunction(() => Number(document.querySelector('#op-progress [role=progressbar]')?.getAttribute('aria-valuenow')) >= 30, null, { timeout: 60_000, polling: 'raf' });
    await screenshot(page, 'operation-running', { fullPage: false });
    await page.waitForFunction(() => document.querySelector('#op-progress [role=progressbar]')?.getAttribute('aria-valuenow') === '100', null, { timeout: 60_000, polling: 'raf' });
    await waitForText(page, '#op-progress .pct', '100%');
    await waitForText(page, '#op-status', 'succeeded');
    assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was not reloaded');

    const server = await alice.api.get(id);
    assert.equal(server.status, 'succeeded');
    assert.equal(server.children.succeeded, 50);
    await waitForText(page, '#op-children-summary [data-status=succeeded] strong', '50');
    await waitForText(page, '#op-result', '"succeeded": 50');
    // The paged children table: 50 per page, all of them done.
    await page.waitForFunction(() => document.querySelectorAll('#op-children .ops-body .op-row').length === 50
      && [...document.querySelectorAll('#op-children .ops-body .badge')].every((badge) => badge.textContent === 'succeeded'), null, { timeout: 20_000, polling: 'raf' });
    const events = await page.locator('#op-timeline li[data-seq]').evaluateAll((items) => items.map((item) => Number(item.dataset.seq)));
    assert.equal(events[0], server.seq, 'the newest event is on top');
    assert.deepEqual(events, [...events].sort((a, b) => b - a), 'events are in order, none twice');
    assert.equal(new Set(events).size, events.length);
    await waitForText(page, '#op-timeline li:first-child', 'succeeded');
    await screenshot(page, 'operation-succeeded');

    // Back in the list, the operation is there and done.
    await page.locator('#nav-operations').click();
    await waitForText(page, `.op-row[data-id="${id}"] .badge`, 'succeeded');
    assert.deepEqual(record.dialogs, []);
    assert.deepEqual(record.errors, []);
    await context.close();
  });

  test('cancels a running operation, then deletes it, each after a confirmation', async () => {
    const op = await alice.api.start('demo.fanout', { children: 10, child_duration_ms: 120_000 });
    const { page, record, context } = await openPage(browser, { token: alice.token });
    await page.goto(`${platform.url}/ui/#/operations`);
    await page.locator(`.op-row[data-id="${op.id}"]`).click();
    await waitForText(page, '#op-status', 'running');
    await waitForText(page, '#op-children-summary [data-status=running] strong', '10');

    // Saying no keeps it running.
    await page.locator('#op-cancel').click();
    await page.locator('dialog.confirm #confirm-no').click();
    assert.equal((await alice.api.get(op.id)).status, 'running');

    await page.locator('#op-cancel').click();
    await waitForText(page, 'dialog.confirm', '10 unfinished children');
    await page.locator('dialog.confirm #confirm-yes').click();
    await waitForText(page, '#op-status', 'cancelled');
    await waitForText(page, '#op-cancel-reason', 'cancelled by alice');
    await waitForText(page, '#op-children-summary [data-status=cancelled] strong', '10');
    assert.equal((await alice.api.get(op.id)).status, 'cancelled');
    assert.equal(await page.locator('#op-cancel').isVisible(), false);
    await screenshot(page, 'operation-cancelled');

    await page.locator('#op-delete').click();
    await page.locator('dialog.confirm #confirm-yes').click();
    await page.waitForURL(/#\/operations$/);
    await page.locator('#ops, .empty').first().waitFor();
    await assert.rejects(alice.api.get(op.id), (err) => err.status === 404);
    assert.equal(await page.locator(`.op-row[data-id="${op.id}"]`).count(), 0);
    assert.deepEqual(record.dialogs, []);
    await context.close();
  });

  test('shows the api\'s 422 field errors next to their fields and starts nothing', async () => {
    const before = (await alice.api.list('?limit=1000')).length;
    const { page, record, context } = await openPage(browser, { token: alice.token });
    await page.goto(`${platform.url}/ui/#/start/demo.fanout`);
    await page.locator('#field-children').fill('1000000');
    await page.locator('#field-child_steps').fill(HOSTILE);
    await page.locator('#start-submit').click();

    const childrenError = page.locator('[data-field=children] .field-error');
    await waitForText(page, '[data-field=children] .field-error', '100000');
    assert.equal(await page.locator('#field-children').getAttribute('aria-invalid'), 'true');
    assert.match(await page.locator('#field-children').getAttribute('aria-describedby'), /field-children-error/);
    assert.equal(await childrenError.isVisible(), true);
    // The api's message quotes the input: it is shown as text, not markup.
    await waitForText(page, '[data-field=child_steps] .field-error', HOSTILE);
    assert.equal(await page.locator('.start-form img').count(), 0);
    assert.equal(await page.locator('[data-field=child_duration_ms] .field-error').isVisible(), false);
    await waitForText(page, '.form-errors', 'does not match the schema');
    assert.match(page.url(), /#\/start\/demo\.fanout$/);
    await screenshot(page, 'start-form-422');

    // Fixing the fields clears the errors and starts it.
    await page.locator('#field-children').fill('2');
    await page.locator('#field-child_steps').fill('1');
    await page.locator('#field-child_duration_ms').fill('0');
    await page.locator('#start-submit').click();
    await page.waitForURL(/#\/operations\/[0-9a-f-]{36}$/);
    assert.equal((await alice.api.list('?limit=1000')).length, before + 1, 'only the valid submission started an operation');
    assert.deepEqual(record.dialogs, []);
    await context.close();
  });

  test('the JSON editor and the run options reach the api as written', async () => {
    const { page, record, context } = await openPage(browser, { token: alice.token });
    await page.goto(`${platform.url}/ui/#/start/demo.sleep`);
    await page.locator('#field-duration_ms').fill('10');
    await page.locator('#json-mode').check();
    assert.deepEqual(JSON.parse(await page.locator('#json-input').inputValue()), { duration_ms: 10 });
    await page.locator('#json-input').fill('{"duration_ms": 5, "extra": true}');
    await page.locator('#start-submit').click();
    await waitForText(page, '.form-errors', 'extra');
    assert.match(page.url(), /#\/start\/demo\.sleep$/);

    await page.locator('#json-input').fill('{"duration_ms": 5, "steps": 1}');
    await page.locator('.run-options summary').click();
    await page.locator('#option-max_attempts').fill('7');
    await page.locator('#start-submit').click();
    await page.waitForURL(/#\/operations\/[0-9a-f-]{36}$/);
    const id = decodeURIComponent(page.url().split('/').pop());
    await waitForText(page, '#op-status', 'succeeded');
    await waitForText(page, '#op-meta [data-field=attempt]', '1 of 7');
    await waitForText(page, '#op-result', '"slept_ms": 5');
    assert.equal((await alice.api.get(id)).max_attempts, 7);
    assert.deepEqual(record.dialogs, []);
    await context.close();
  });

  test('every kind gets a form with a field per input property', async () => {
    const { page, context } = await openPage(browser, { token: alice.token });
    const kinds = (await alice.api.request('GET', '/v1/kinds')).kinds;
    assert.ok(kinds.length >= 2);
    for (const kind of kinds) {
      await page.goto(`${platform.url}/ui/#/start/${kind.kind}`);
      await waitForText(page, '.start-form h2', kind.kind);
      for (const name of Object.keys(kind.input_schema.properties ?? {})) {
        assert.equal(await page.locator(`.start-form [data-field="${name}"]`).count(), 1, `${kind.kind} has a field ${name}`);
      }
    }
    await context.close();
  });

  test('renders hostile text from the platform as text', async () => {
    const hostile = { token: await platform.token(HOSTILE) };
    hostile.api = platform.client(hostile.token);
    const { page, record, context } = await openPage(browser, { token: hostile.token });
    await page.goto(`${platform.url}/ui/#/start/demo.sleep`);
    await page.locator('#field-duration_ms').fill('120000');
    await page.locator('#field-steps').fill('2');
    await page.locator('#start-submit').click();
    await page.waitForURL(/#\/operations\/[0-9a-f-]{36}$/);
    await waitForText(page, '#op-status', 'running');
    await page.locator('#op-cancel').click();
    await page.locator('dialog.confirm #confirm-yes').click();
    await waitForText(page, '#op-status', 'cancelled');

    // The gateway's cancel reason names the token's sub: "cancelled by <img …>".
    const reason = `cancelled by ${HOSTILE}`;
    await waitForText(page, '#op-cancel-reason', reason);
    assert.equal(await page.locator('#op-cancel-reason').textContent(), reason);
    await waitForText(page, '#op-timeline li:first-child .summary', reason);
    assert.equal(await page.locator('#user-sub').textContent(), HOSTILE);
    await waitForText(page, '#op-meta [data-field=owner]', HOSTILE);
    assert.equal(await page.locator('img[src="x"]').count(), 0, 'no element was injected');
    await screenshot(page, 'hostile-text');

    // Live in the list too: a new operation's cancel reaches the row as text.
    await page.goto(`${platform.url}/ui/#/operations`);
    await waitForText(page, '#connection', 'Live');
    const second = await hostile.api.start('demo.sleep', { duration_ms: 120_000, steps: 2 });
    await page.locator(`.op-row[data-id="${second.id}"]`).waitFor();
    await hostile.api.cancel(second.id);
    await waitForText(page, `.op-row[data-id="${second.id}"] .col-message`, reason);
    assert.equal(await page.locator('img[src="x"]').count(), 0);
    assert.deepEqual(record.dialogs, [], 'no dialog fired');
    assert.deepEqual(record.errors, []);
    await context.close();
  });

  test('an admin sees every owner\'s operations with an owner column, live', async () => {
    const bobs = await bob.api.start('demo.sleep', { duration_ms: 4000, steps: 8 });
    const admin = await platform.token('root', ['admin']);
    const { page, record, context } = await openPage(browser, { token: admin });
    await page.goto(`${platform.url}/ui/#/operations`);
    await waitForText(page, 'h1', 'every owner');
    await waitForText(page, '.ops-head', 'Owner');
    await waitForText(page, `.op-row[data-id="${bobs.id}"] .col-owner`, 'bob');
    const owners = await page.locator('.ops-body .col-owner').allTextContents();
    assert.ok(owners.includes('alice') && owners.includes('bob'), `owners shown: ${owners}`);
    assert.ok(owners.includes(HOSTILE), 'a hostile owner name is shown as text');
    assert.equal(await page.locator('img[src="x"]').count(), 0);
    await screenshot(page, 'admin-list');
    // Bob's operation is not the admin's: it is followed on its own, live.
    await waitForText(page, `.op-row[data-id="${bobs.id}"] .badge`, 'succeeded', 30_000);
    assert.equal(await page.locator(`.op-row[data-id="${bobs.id}"] [role=progressbar]`).getAttribute('aria-valuenow'), '100');

    // The owner filter narrows the list to one owner.
    await page.locator('#filter-owner').fill('bob');
    await page.locator('#filter-owner').press('Enter');
    await page.waitForURL(/owner=bob/);
    await page.waitForFunction(() => {
      const cells = [...document.querySelectorAll('.ops-body .col-owner')];
      return cells.length > 0 && cells.every((cell) => cell.textContent === 'bob');
    }, null, { timeout: 10_000, polling: 'raf' });
    assert.deepEqual(record.dialogs, []);
    await context.close();
  });

  test('filters by status and kind, and pages through the list', async () => {
    const carol = { token: await platform.token('carol') };
    carol.api = platform.client(carol.token);
    const started = [];
    for (let i = 0; i < 7; i += 1) started.push(await carol.api.start('demo.sleep', { duration_ms: 0, steps: 1 }));
    const failing = await carol.api.start('demo.fanout', { children: 1, child_duration_ms: 0, fail_children: [0] });
    await Promise.all([...started, failing].map((op) => carol.api.wait(op.id)));

    let { page, context } = await openPage(browser, { token: carol.token });
    await page.goto(`${platform.url}/ui/#/operations?status=failed`);
    await page.locator(`.op-row[data-id="${failing.id}"]`).waitFor();
    assert.equal(await page.locator('.ops-body .op-row').count(), 1);
    await waitForText(page, `.op-row[data-id="${failing.id}"] .col-message`, 'children failed');

    await page.locator('#filter-status').selectOption('');
    await page.locator('#filter-kind').selectOption('demo.sleep');
    await page.waitForURL(/kind=demo.sleep/);
    await page.waitForFunction(() => document.querySelectorAll('.ops-body .op-row').length === 7, null, { timeout: 10_000, polling: 'raf' });

    // 53 operations in all: a page of 50 and one of 3.
    for (let i = 0; i < 45; i += 1) await carol.api.start('demo.sleep', { duration_ms: 0, steps: 1 });
    await context.close();
    const fresh = await openPage(browser, { token: carol.token });
    page = fresh.page;
    context = fresh.context;
    await page.goto(`${platform.url}/ui/#/operations`);
    await waitForText(page, '#list-info', 'Page 1 · 50 operations');
    const firstPage = await page.locator('.ops-body .op-row').evaluateAll((rows) => rows.map((row) => row.dataset.id));
    assert.deepEqual(firstPage, [...firstPage].sort().reverse(), 'newest first');
    await page.locator('#page-older').click();
    await waitForText(page, '#list-info', 'Page 2 · 3 operations');
    const secondPage = await page.locator('.ops-body .op-row').evaluateAll((rows) => rows.map((row) => row.dataset.id));
    assert.ok(secondPage.every((id) => id < firstPage[firstPage.length - 1]), 'older operations on page 2');
    assert.equal(await page.locator('#page-older').isDisabled(), true);
    await page.locator('#page-newer').click();
    await waitForText(page, '#list-info', 'Page 1 · 50 operations');
    await context.close();
  });
});
