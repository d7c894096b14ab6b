// The list stays responsive with 1,000 operations on the page and 100 of
// them reporting progress several times a second: frames keep coming, the
// event loop keeps answering, every live row moves, and DOM work is batched
// (fewer redraw passes than events). Bounds are generous: this checks
// behaviour, not speed; the numbers are printed for docs/dashboard.md.

import assert from 'node:assert/strict';
import os from 'node:os';
import { after, before, describe, test } from 'node:test';

import { launch, openPage, screenshot, waitForText } from '../lib/browser.mjs';
import { Platform } from '../lib/platform.mjs';

const LISTED = 1000;
const LIVE = 100;

/** Runs `count` calls of `task`, `width` at a time. */
async function inParallel(count, width, task) {
  const results = new Array(count);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < count) {
      const index = next++;
      results[index] = await task(index);
    }
  }));
  return results;
}

describe('responsiveness', () => {
  /** @type {Platform} */
  let platform;
  /** @type {import('playwright-core').Browser} */
  let browser;

  before(async () => {
    platform = await Platform.start({ name: 'responsiveness', workerConcurrency: 256 });
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await platform?.stop();
  });

  test('1,000 operations listed and 100 updating live', async (t) => {
    const token = await platform.token('perf');
    const api = platform.client(token);
    const finished = await inParallel(LISTED - LIVE, 16, () => api.start('demo.sleep', { duration_ms: 0, steps: 1 }));
    await inParallel(finished.length, 16, (index) => api.wait(finished[index].id));
    // 100 operations reporting progress 5 times a second for a minute.
    const live = await inParallel(LIVE, 16, () => api.start('demo.sleep', { duration_ms: 60_000, steps: 300 }));

    // What the api alone takes to answer the page's read (a debug build, in CI).
    const askedApi = Date.now();
    assert.equal((await api.list('?limit=1000')).length, LISTED);
    const apiListMs = Date.now() - askedApi;

    const { page, record, context } = await openPage(browser, { token });
    const opened = Date.now();
    await page.goto(`${platform.url}/ui/#/operations?limit=1000`);
    await page.waitForFunction((n) => document.querySelectorAll('.ops-body .op-row').length === n, LISTED, { timeout: 30_000, polling: 'raf' });
    const loadMs = Date.now() - opened;
    await waitForText(page, '#connection', 'Live');
    await page.waitForFunction((n) => [...document.querySelectorAll('.ops-body .badge')].filter((badge) => badge.textContent === 'running').length >= n, LIVE, { timeout: 30_000, polling: 'raf' });

    const cdp = await context.newCDPSession(page);
    await cdp.send('Performance.enable');
    const metrics = async () => Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
    // CPU time of Chromium's processes (renderer, GPU/compositor, browser): what the page costs,
    // whatever else the machine is doing.
    const browserSession = await browser.newBrowserCDPSession();
    const cpuByType = async () => {
      const { processInfo } = await browserSession.send('SystemInfo.getProcessInfo');
      const totals = {};
      for (const process of processInfo) totals[process.type] = (totals[process.type] ?? 0) + process.cpuTime;
      return totals;
    };
    const processesBefore = await cpuByType();
    const cpuBefore = await metrics();
    const measured = await page.evaluate(async (windowMs) => {
      const progressOf = (id) => document.querySelector(`.op-row[data-id="${id}"] [role=progressbar]`)?.getAttribute('aria-valuenow');
      const running = [...document.querySelectorAll('.ops-body .op-row')]
        .filter((tr) => tr.querySelector('.badge')?.textContent === 'running')
        .map((tr) => tr.dataset.id);
      const before = new Map(running.map((id) => [id, progressOf(id)]));
      const stats = window.longrunStats;
      const start = { ...stats };
      const gaps = [];
      const lags = [];
      const longTasks = [];
      const observer = new PerformanceObserver((list) => longTasks.push(...list.getEntries().map((entry) => entry.duration)));
      observer.observe({ type: 'longtask', buffered: false });
      await new Promise((resolve) => {
        const end = performance.now() + windowMs;
        let last = performance.now();
        const frame = (now) => {
          gaps.push(now - last);
          last = now;
          if (now < end) requestAnimationFrame(frame);
          else resolve();
        };
        requestAnimationFrame(frame);
        const probe = setInterval(() => {
          const asked = performance.now();
          setTimeout(() => lags.push(performance.now() - asked), 0);
        }, 100);
        setTimeout(() => clearInterval(probe), windowMs);
      });
      observer.disconnect();
      const sorted = [...gaps].sort((a, b) => a - b);
      return {
        live: running.length,
        moved: running.filter((id) => progressOf(id) !== before.get(id)).length,
        frames: gaps.length,
        maxFrameGapMs: Math.round(sorted[sorted.length - 1]),
        p95FrameGapMs: Math.round(sorted[Math.floor(sorted.length * 0.95)]),
        maxEventLoopLagMs: Math.round(Math.max(...lags)),
        longTasks: longTasks.length,
        longestTaskMs: Math.round(Math.max(0, ...longTasks)),
        events: stats.events - start.events,
        flushes: stats.flushes - start.flushes,
        rowUpdates: stats.rowUpdates - start.rowUpdates,
      };
    }, 5000);

    const cpuAfter = await metrics();
    const processesAfter = await cpuByType();
    measured.cpuMs = Object.fromEntries(Object.keys(processesAfter)
      .map((type) => [type, Math.round((processesAfter[type] - (processesBefore[type] ?? 0)) * 1000)]));
    // Main-thread busy time of the renderer in the window, by kind (seconds → ms).
    const busy = (name) => Math.round((cpuAfter[name] - cpuBefore[name]) * 1000);
    measured.busyMs = { task: busy('TaskDuration'), script: busy('ScriptDuration'), layout: busy('LayoutDuration'), style: busy('RecalcStyleDuration') };

    // An interaction while the updates go on: filter to the running ones.
    const asked = Date.now();
    await page.locator('#filter-status').selectOption('running');
    await page.waitForFunction((n) => {
      const badges = [...document.querySelectorAll('.ops-body .badge')];
      return badges.length >= n && badges.every((badge) => badge.textContent === 'running');
    }, LIVE, { timeout: 10_000, polling: 'raf' });
    const filterMs = Date.now() - asked;
    await screenshot(page, 'list-1000-live', { fullPage: false });

    const report = { listed: LISTED, apiListMs, loadMs, filterMs, ...measured, load: os.loadavg()[0].toFixed(1) };
    t.diagnostic(`responsiveness: ${JSON.stringify(report)}`);
    console.log(`responsiveness: ${JSON.stringify(report)}`);

    assert.ok(measured.live >= LIVE, `${measured.live} rows running`);
    assert.ok(measured.moved >= LIVE * 0.9, `only ${measured.moved} of ${measured.live} live rows moved in 5 s`);
    assert.ok(measured.events > measured.flushes, 'events are batched into fewer redraws');
    assert.ok(measured.frames >= 50, `only ${measured.frames} frames in 5 s`);
    assert.ok(measured.maxFrameGapMs < 1000, `a frame took ${measured.maxFrameGapMs} ms`);
    assert.ok(measured.maxEventLoopLagMs < 1000, `the event loop was blocked for ${measured.maxEventLoopLagMs} ms`);
    assert.ok(filterMs < 10_000);
    assert.deepEqual(record.errors, []);
    await Promise.all(live.map((op) => api.cancel(op.id).catch(() => {})));
    await context.close();
  });
});
